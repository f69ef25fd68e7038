"""Reading the experiment store: names, files, YAML, metric tables."""

from .files import UnreadableFile
from .names import InvalidName
from .store import NotFound, OutsideStore, Store, StoreClosed

__all__ = ["InvalidName", "NotFound", "OutsideStore", "Store", "StoreClosed", "UnreadableFile"]
