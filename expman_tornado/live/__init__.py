"""Live updates: watchers of the store, the hub that reads each change once, SSE events."""

from .hub import LiveHub

__all__ = ["LiveHub"]
