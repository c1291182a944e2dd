"""Replication of comment edits between regions."""


# This region's name in comment edit version vectors (must differ between regions).
