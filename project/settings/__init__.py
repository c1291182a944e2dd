"""Settings package: ``base`` plus one small module per concern, all fed by ``environment``."""

from project.settings.api import *  # noqa: F403
from project.settings.base import *  # noqa: F403
from project.settings.celery import *  # noqa: F403
from project.settings.channels import *  # noqa: F403
from project.settings.database import *  # noqa: F403
from project.settings.gateway import *  # noqa: F403
from project.settings.reactions import *  # noqa: F403
from project.settings.realtime import *  # noqa: F403
from project.settings.replication import *  # noqa: F403
