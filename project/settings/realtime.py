"""The real-time tier at scale: per-socket backpressure, the node registry, presence."""
