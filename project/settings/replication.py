"""Replication of comment edits between regions."""

from project.settings.environment import REGION

# This region's name in comment edit version vectors (must differ between regions).
CHORUS_REGION = REGION
