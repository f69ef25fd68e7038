"""The filesystem interface the store reads through: a local folder or object storage.

:func:`open_filesystem` picks the implementation from the store root. A plain
path gives :class:`LocalFilesystem`, which makes direct ``os`` calls, the same
system calls the store made before this interface existed. A URL such as
``s3://bucket/prefix`` gives :class:`ObjectFilesystem`, which reads through
fsspec (s3fs for ``s3://``). Both name files by the root joined with ``/`` and
the names below it, such as ``s3://bucket/prefix/exp/run/run.yaml``.

Every method is safe to call from threads. Missing files are reported as
None, ``[]`` or :class:`FileNotFoundError`, as each method documents. Finding out
what changed is not done here: the watchers do that (inotify, stat passes, and
for object storage the listing watcher, which calls
:meth:`ObjectFilesystem.refresh`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from stat import S_ISLNK, S_ISREG
from typing import IO, NamedTuple

from .names import is_inside, is_utf8

log = logging.getLogger(__name__)


class Identity(NamedTuple):
    """The fields that distinguish two versions of a file without reading it.

    On a local disk it is the inode, size and mtime. On object storage
    ``inode`` is a number derived from the object's ETag (see
    :meth:`ObjectFilesystem.identity_of`), so a rewritten object counts as a
    new file.
    """

    inode: int
    size: int
    mtime_ns: int


def identity_of(stat: os.stat_result) -> Identity:
    return Identity(stat.st_ino, stat.st_size, stat.st_mtime_ns)


class FolderEntry(NamedTuple):
    """One entry of a folder listing."""

    name: str
    is_folder: bool
    #: A symlink (to a folder when ``is_folder``); never on object storage.
    is_link: bool


class StoreUnavailable(RuntimeError):
    """A store root that cannot be read: missing, not a folder, or refused by its server."""


def is_url(root: str) -> bool:
    """Return whether a store root is a URL (``scheme://…``) rather than a local path."""
    scheme, separator, _ = root.partition("://")
    return bool(separator) and scheme.isidentifier() and scheme != "file"


def open_filesystem(root: str, storage_options: dict | None = None) -> LocalFilesystem | ObjectFilesystem:
    """Return the filesystem of a store root: local for a path or ``file://`` URL, else fsspec's."""
    if is_url(root):
        return ObjectFilesystem(root, storage_options)
    return LOCAL


def check_root(root: str, storage_options: dict | None = None) -> None:
    """Check that a store root can be read; raise StoreUnavailable with a message for the user.

    For object storage it lists the root once, so wrong credentials, a missing
    bucket or an unreachable endpoint are found before the server starts.
    """
    filesystem = open_filesystem(root, storage_options)
    if isinstance(filesystem, ObjectFilesystem):
        filesystem.refresh()
    elif not os.path.isdir(root.removeprefix("file://")):
        raise StoreUnavailable("Store folder %s does not exist or is not a folder." % root)


class LocalFilesystem:
    """A store in a local folder, read with direct ``os`` calls."""

    name = "local"
    #: Whether the store is a folder that other programs (Jupyter) can open.
    is_local = True
    #: Whether symlinks exist, so paths must be checked to resolve inside the store.
    has_links = True

    def root_path(self, root: str) -> str:
        """Return the store root as the paths of this filesystem start: the real path of the folder."""
        return os.path.realpath(root.removeprefix("file://"))

    # Listings

    def list_names(self, folder: str) -> list[str]:
        """Return the names in a folder; ``[]`` for a missing or unreadable one."""
        try:
            return os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return []

    def list_folder(self, folder: str) -> list[FolderEntry] | None:
        """Return the entries of a folder, or None for a missing or unreadable one."""
        found = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        found.append(FolderEntry(entry.name, entry.is_dir(), entry.is_symlink()))
                    except OSError:
                        continue
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        return found

    def scan_files(self, folder: str, prefix: str = "", inside: str | None = None) -> dict[str, Identity]:
        """Return the identity of each regular file directly in a folder whose name starts with ``prefix``.

        With ``inside`` (the store root), a symlink that resolves outside it is
        left out. A missing or unreadable folder has no files.
        """
        found = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.name.startswith(prefix):
                        continue
                    try:
                        # is_file() follows symlinks but needs no system call for other entries.
                        if not entry.is_file():
                            continue
                        if inside is not None and entry.is_symlink() and not is_inside(entry.path, inside):
                            continue
                        stat = entry.stat()
                    except OSError:
                        continue
                    if S_ISREG(stat.st_mode):
                        found[entry.name] = identity_of(stat)
        except OSError:
            pass
        return found

    def walk_files(self, top: str, inside: str) -> list[str]:
        """List the files under ``top``, relative to it with ``/``, sorted by folder.

        Names that are not UTF-8 and symlinks that resolve outside ``inside`` are left out.
        """
        found = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            dirnames[:] = sorted(
                d for d in dirnames if is_utf8(d) and is_inside(os.path.join(dirpath, d), inside)
            )
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if is_utf8(name) and os.path.isfile(path) and is_inside(path, inside):
                    found.append(os.path.relpath(path, top).replace(os.sep, "/"))
        return found

    def tree_size(self, folder: str) -> int:
        """Return the sum of the sizes of the files under a folder (symlinks count as themselves)."""
        total = 0
        for dirpath, _, filenames in os.walk(folder):
            for name in filenames:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue
        return total

    # Single paths

    def is_folder(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path)

    def is_link(self, path: str) -> bool:
        return os.path.islink(path)

    def exists(self, path: str) -> bool:
        """Return whether anything is at ``path``, a broken symlink included."""
        return os.path.lexists(path)

    def is_inside(self, path: str, folder: str) -> bool:
        """Return whether ``path``, with symlinks resolved, lies inside ``folder``."""
        return is_inside(path, folder)

    def real_path(self, path: str) -> str:
        return os.path.realpath(path)

    def stat(self, path: str) -> Identity | None:
        """Return the identity of a regular file, or None when it is missing or cannot be reached.

        A folder on the way that this process may not search (EACCES) counts as missing.
        """
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return identity_of(stat) if S_ISREG(stat.st_mode) else None

    def stat_file(self, path: str, inside: str | None = None) -> Identity | None:
        """Return the identity of one regular file, or None (missing, not regular, or a link leaving ``inside``)."""
        try:
            stat = os.lstat(path)
            if S_ISLNK(stat.st_mode):
                if inside is not None and not is_inside(path, inside):
                    return None
                stat = os.stat(path)
        except OSError:
            return None
        return identity_of(stat) if S_ISREG(stat.st_mode) else None

    def mtime(self, path: str) -> float:
        """Return the mtime of a file or folder in seconds, 0 when it is missing."""
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0

    def open_folder(self, folder: str) -> int:
        """Open a folder for :meth:`stat_keys`; raise FileNotFoundError or NotADirectoryError.

        Paths relative to an open folder cost the kernel a shorter lookup than
        absolute ones, and the runs listing makes thousands of them.
        """
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)

    def close_folder(self, handle: int) -> None:
        os.close(handle)

    def stat_keys(self, paths: tuple[str, ...], folder: int | None = None) -> tuple:
        """Return ``(inode, size, mtime_ns)`` of each path (file or folder), None for one that cannot be stat-ed.

        Relative paths are taken from ``folder``, a handle of :meth:`open_folder`.
        """
        keys = []
        for path in paths:
            try:
                stat = os.stat(path, dir_fd=folder)
            except OSError:
                keys.append(None)
                continue
            keys.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(keys)

    # Reading and writing

    def read_bytes(self, path: str, offset: int = 0, limit: int = -1) -> bytes:
        """Return up to ``limit`` bytes (all for -1) of a file from ``offset``; raise OSError.

        The file is opened with O_NONBLOCK, so a FIFO under a store file's name
        cannot block a reading thread.
        """
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if offset:
                f.seek(offset)
            return f.read(limit)

    def read_appended(self, path: str, offset: int, inode: int | None) -> tuple[int | None, int, bytes]:
        """Return ``(inode, start, data)``: the bytes of a growing file from ``offset``; raise OSError.

        When the file is another one than ``inode`` or shorter than ``offset``,
        ``start`` is 0 and ``data`` is the whole file. Something that is not a
        regular file (a FIFO) gives no bytes.
        """
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            stat = os.fstat(f.fileno())
            if not S_ISREG(stat.st_mode):
                return inode, offset, b""
            if stat.st_ino != inode or stat.st_size < offset:
                offset = 0
            f.seek(offset)
            return stat.st_ino, offset, f.read()

    def open_input(self, path: str) -> IO[bytes]:
        """Open a file for random access (seek, read), as pyarrow's readers take it; raise OSError."""
        return open(path, "rb")

    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace a file with ``data`` through a temporary file, fsync and rename, keeping its mode."""
        folder = os.path.dirname(path)
        fd, temporary = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(path):
                os.chmod(temporary, os.stat(path).st_mode & 0o777)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise


#: The one local filesystem; it keeps no state.
LOCAL = LocalFilesystem()


#: Seconds a listing of object storage is used before a read lists the store again.
#: The listing watcher refreshes it on its own interval (see ListingWatcher).
LISTING_MAX_AGE = 2.0

#: Bytes read ahead by a file opened with :meth:`ObjectFilesystem.open_input`.
OBJECT_BLOCK_SIZE = 1 << 20


class _Listing(NamedTuple):
    """One listing of every object under the store root."""

    #: The identity of each object, by path.
    files: dict[str, Identity]
    #: The entries of each folder (a key prefix that ends before a ``/``), by path.
    folders: dict[str, dict[str, bool]]
    #: ``time.monotonic()`` when the listing was taken.
    taken_at: float


class ObjectFilesystem:
    """A store on object storage (S3 or any filesystem fsspec reaches), read through fsspec.

    Listings, stats and existence checks are served from one listing of
    every object under the root, taken at most :attr:`max_age` seconds ago
    (one LIST request per 1,000 objects on S3). Reads go to the objects
    themselves: a byte range per read, so a parquet file or a segment is read
    in place, never copied to disk first. Object storage has no symlinks, and
    an object cannot be appended to: a segment uploaded again with more rows
    is a new object (new ETag), which its reader reads again from its first
    byte.

    Credentials and the endpoint come from ``storage_options`` (passed to the
    fsspec filesystem, e.g. ``endpoint_url``, ``key``, ``secret`` for s3fs) or
    else from the usual AWS environment variables (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
    ``AWS_ENDPOINT_URL``), as botocore reads them.
    """

    name = "object"
    is_local = False
    has_links = False

    def __init__(self, url: str, storage_options: dict | None = None, max_age: float = LISTING_MAX_AGE):
        try:
            import fsspec  # Only object storage needs it, so a local store runs without it.
        except ImportError:
            raise StoreUnavailable("Reading %s needs fsspec and s3fs: pip install 'expman-tornado[s3]'"
                                   % url) from None
        self.url = url.rstrip("/")
        self.protocol = self.url.split("://", 1)[0]
        self.max_age = max_age
        options = dict(storage_options or {})
        options.setdefault("skip_instance_cache", True)
        # fsspec's own listing cache would make reads of objects created after it listed
        # their folder fail with FileNotFoundError. This class keeps its own listing.
        options.setdefault("use_listings_cache", False)
        if self.protocol in ("s3", "s3a"):
            # With botocore's default retries, a request to an endpoint that went
            # away took 5 to 28 s to fail here. Fail within seconds, so that the
            # handlers return 503 soon.
            options.setdefault("config_kwargs", {"connect_timeout": 3, "retries": {"max_attempts": 2}})
        try:
            self._fs, self._root_key = fsspec.core.url_to_fs(self.url, **options)
        except ImportError as exc:
            hint = " (pip install 'expman-tornado[s3]')" if self.protocol in ("s3", "s3a") else ""
            raise StoreUnavailable("Cannot open %s: %s%s" % (self.url, exc, hint)) from None
        except ValueError as exc:
            raise StoreUnavailable("Cannot open %s: %s" % (self.url, exc)) from None
        self._root_key = self._root_key.rstrip("/")
        self._listing: _Listing | None = None
        self._refresh_lock = threading.Lock()

    def root_path(self, root: str) -> str:
        return self.url

    # The listing

    def refresh(self) -> dict[str, Identity]:
        """List every object under the root now; return each file's identity by path.

        Raise StoreUnavailable with a message for the user when the listing
        fails (credentials refused, bucket missing, endpoint unreachable).
        """
        with self._refresh_lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> dict[str, Identity]:
        """List every object under the root; call with ``_refresh_lock`` held."""
        started = time.monotonic()
        try:
            found = self._list_objects()
        except Exception as exc:  # noqa: BLE001 (fsspec backends raise many kinds; all mean the same here)
            raise StoreUnavailable(_listing_error(self.url, exc)) from None
        files: dict[str, Identity] = {}
        folders: dict[str, dict[str, bool]] = {self.url: {}}
        prefix = self._root_key + "/"
        for key, info in found.items():
            if not key.startswith(prefix) or info.get("type") == "directory" or key.endswith("/"):
                continue
            path = self.url + "/" + key[len(prefix):]
            files[path] = self.identity_of(info)
            _add_to_folders(folders, self.url, path)
        self._listing = _Listing(files, folders, started)
        log.debug("Listed %d objects under %s in %.3f s", len(files), self.url, time.monotonic() - started)
        return files

    def _list_objects(self) -> dict[str, dict]:
        return self._fs.find(self._root_key, detail=True)

    def _current(self) -> _Listing:
        """Return a listing no older than :attr:`max_age`, listing again when needed.

        Threads that find the listing too old at once wait for one new listing.
        When listing fails, the last listing is served for another
        :attr:`max_age` seconds, and StoreUnavailable is raised only when
        there is none.
        """
        listing = self._listing
        if listing is None or time.monotonic() - listing.taken_at > self.max_age:
            with self._refresh_lock:
                listing = self._listing
                if listing is None or time.monotonic() - listing.taken_at > self.max_age:
                    try:
                        self._refresh_locked()
                    except StoreUnavailable as exc:
                        if listing is None:
                            raise
                        log.warning("%s; serving the listing of %.0f s ago", exc, time.monotonic() - listing.taken_at)
                        self._listing = listing._replace(taken_at=time.monotonic())
                    listing = self._listing
            assert listing is not None
        return listing

    @staticmethod
    def identity_of(info: dict) -> Identity:
        """Return the identity of an object from its listing entry: ETag, size and last modified time.

        A backend without ETags gives a number derived from the size and time instead.
        NOTE: S3 gives the time in whole seconds, so a segment uploaded in the same
        second as ``vectors.parquet`` counts as older than it (see :func:`tables.combine`).
        """
        size = int(info.get("size") or 0)
        modified = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
        mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else int(float(modified or 0) * 1e9)
        tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or "%d-%d" % (size, mtime_ns)
        digest = hashlib.blake2b(str(tag).encode("utf-8"), digest_size=8).digest()
        return Identity(int.from_bytes(digest, "big") >> 1, size, mtime_ns)

    def _key(self, path: str) -> str:
        """Return the fsspec path of a store path; raise FileNotFoundError for one outside the root."""
        if path == self.url:
            return self._root_key
        if not path.startswith(self.url + "/"):
            raise FileNotFoundError(path)
        return self._root_key + path[len(self.url):]

    # Listings

    def list_names(self, folder: str) -> list[str]:
        return list(self._current().folders.get(folder, ()))

    def list_folder(self, folder: str) -> list[FolderEntry] | None:
        entries = self._current().folders.get(folder)
        if entries is None:
            return None
        return [FolderEntry(name, is_folder, False) for name, is_folder in entries.items()]

    def scan_files(self, folder: str, prefix: str = "", inside: str | None = None) -> dict[str, Identity]:
        listing = self._current()
        entries = listing.folders.get(folder, {})
        return {name: listing.files[folder + "/" + name] for name, is_folder in entries.items()
                if not is_folder and name.startswith(prefix)}

    def walk_files(self, top: str, inside: str) -> list[str]:
        start = top + "/"
        found = [path[len(start):] for path in self._current().files if path.startswith(start)]
        return sorted(found, key=_walk_order)

    def tree_size(self, folder: str) -> int:
        start = folder + "/"
        return sum(identity.size for path, identity in self._current().files.items() if path.startswith(start))

    # Single paths

    def is_folder(self, path: str) -> bool:
        return path in self._current().folders

    def is_file(self, path: str) -> bool:
        return path in self._current().files

    def is_link(self, path: str) -> bool:
        return False

    def exists(self, path: str) -> bool:
        listing = self._current()
        return path in listing.files or path in listing.folders

    def is_inside(self, path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    def real_path(self, path: str) -> str:
        return path

    def stat(self, path: str) -> Identity | None:
        return self._current().files.get(path)

    def stat_file(self, path: str, inside: str | None = None) -> Identity | None:
        return self._current().files.get(path)

    def stat_fresh(self, path: str) -> Identity | None:
        """Return the identity of an object as its server has it now (one HEAD request), or None."""
        try:
            with _transport_errors(self.url, path):
                return self.identity_of(self._fs.info(self._key(path), refresh=True))
        except FileNotFoundError:
            return None

    def mtime(self, path: str) -> float:
        identity = self._current().files.get(path)
        return identity.mtime_ns / 1e9 if identity is not None else 0.0

    def open_folder(self, folder: str) -> str:
        if folder not in self._current().folders:
            raise FileNotFoundError(folder)
        return folder

    def close_folder(self, handle: str) -> None:
        pass

    def stat_keys(self, paths: tuple[str, ...], folder: str | None = None) -> tuple:
        """Return the identity of each path as a tuple, None for a missing one.

        A folder's key changes when an entry is added to it or removed from it,
        as a local folder's mtime does.
        """
        listing = self._current()
        keys = []
        for path in paths:
            if folder is not None:
                path = folder + "/" + path
            entries = listing.folders.get(path)
            if entries is not None:
                # A folder first: an object whose key is also a folder's (a folder marker
                # some tools write) must not hide the changes of that folder's entries.
                # NOTE: str hashes differ between processes, so a folder's key is never
                # compared across restarts; the summary index keeps keys of files only.
                keys.append((0, len(entries), hash(frozenset(entries))))
                continue
            identity = listing.files.get(path)
            keys.append(None if identity is None else tuple(identity))
        return tuple(keys)

    # Reading and writing

    def read_bytes(self, path: str, offset: int = 0, limit: int = -1) -> bytes:
        """Return up to ``limit`` bytes (all for -1) of an object from ``offset``: one ranged GET.

        An object that the listing shows empty is not requested (S3 rejects a range of an empty object).
        """
        if limit == 0 or offset == 0 and getattr(self.stat(path), "size", None) == 0:
            return b""
        end = None if limit < 0 else offset + limit
        # An explicit start: without one, s3fs sends a HEAD request first.
        with _transport_errors(self.url, path):
            return self._fs.cat_file(self._key(path), start=offset, end=end)

    def read_appended(self, path: str, offset: int, inode: int | None) -> tuple[int | None, int, bytes]:
        """Return ``(inode, start, data)`` like :meth:`LocalFilesystem.read_appended`.

        The object's identity comes from the listing. An object whose ETag
        changed is another object, read from its first byte.
        """
        identity = self.stat(path)
        if identity is None:
            raise FileNotFoundError(path)
        if identity.inode != inode or identity.size < offset:
            offset = 0
        if identity.size == offset:
            return identity.inode, offset, b""
        return identity.inode, offset, self.read_bytes(path, offset, identity.size - offset)

    def open_input(self, path: str) -> IO[bytes]:
        # NOTE: only the opening request is checked here; a read that fails later
        # raises what the fsspec backend raises.
        with _transport_errors(self.url, path):
            return self._fs.open(self._key(path), "rb", block_size=OBJECT_BLOCK_SIZE)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Upload a whole object (one PUT, which object storage applies atomically), then list it."""
        key = self._key(path)
        with _transport_errors(self.url, path):
            self._fs.pipe_file(key, data)
        identity = self.stat_fresh(path)
        with self._refresh_lock:
            listing = self._listing
            if listing is None or identity is None:
                return
            # A new listing rather than a change of the current one, which other threads may be iterating.
            files = {**listing.files, path: identity}
            folders = {folder: dict(entries) for folder, entries in listing.folders.items()}
            _add_to_folders(folders, self.url, path)
            self._listing = listing._replace(files=files, folders=folders)


@contextlib.contextmanager
def _transport_errors(url: str, path: str):
    """Raise StoreUnavailable for a request to object storage that failed on the way.

    A missing object or a refused permission keeps its own error. Anything else
    (connection refused, timeouts, a closed endpoint) comes from many layers
    (botocore, aiohttp, s3fs), and all of it means the storage cannot be reached now.
    """
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 (see above)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailable("Cannot reach %s for %s: %s" % (url, path.rpartition("/")[2], text)) from None


def _add_to_folders(folders: dict[str, dict[str, bool]], root: str, path: str) -> None:
    """Enter a file and the folders above it, up to the root, into a listing's folders."""
    parent, _, name = path.rpartition("/")
    is_folder = False
    while True:
        entries = folders.get(parent)
        if entries is None:
            entries = folders[parent] = {}
        elif name in entries:
            return
        entries[name] = is_folder
        if parent == root or len(parent) <= len(root):
            return
        parent, _, name = parent.rpartition("/")
        is_folder = True


def _listing_error(url: str, exc: BaseException) -> str:
    """Return the message for a failed listing of a store root, naming the likely fix."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return "Cannot list %s: not found (%s). Check the bucket name and the endpoint (AWS_ENDPOINT_URL)." % (
            url, text)
    if isinstance(exc, PermissionError) or type(exc).__name__ in ("NoCredentialsError", "ClientError"):
        return ("Cannot list %s: access denied (%s). Check the credentials (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or c.ExpmanTornado.storage_options)." % (url, text))
    return "Cannot list %s: %s: %s" % (url, type(exc).__name__, text)


def _walk_order(relative: str) -> list[tuple[int, str]]:
    """Return the sort key that lists files as ``os.walk`` does: a folder's files, then its sorted subfolders."""
    parts = relative.split("/")
    return [(1, part) for part in parts[:-1]] + [(0, parts[-1])]


#: Either filesystem, for annotations of code that reads through both.
Filesystem = LocalFilesystem | ObjectFilesystem
