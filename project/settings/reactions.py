"""Reactions: configured kinds, tap limits, counter flushing and hot-stream handling."""
