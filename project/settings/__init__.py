"""Settings package: ``base`` plus one small module per concern, all fed by ``environment``.

Every ``CHORUS_*`` setting is defined once, in ``environment``, under the name the code reads
(``settings.CHORUS_X``); the modules below only derive Django's and the libraries' settings.
"""

from project.settings.api import *  # noqa: F403
from project.settings.base import *  # noqa: F403
from project.settings.celery import *  # noqa: F403
from project.settings.database import *  # noqa: F403
from project.settings.environment import *  # noqa: F403
from project.settings.gateway import *  # noqa: F403
from project.settings.reactions import *  # noqa: F403
from project.settings.realtime import *  # noqa: F403
from project.settings.replication import *  # noqa: F403
