"""Log files of a run (run.log, console.log), whole or their last lines."""

from __future__ import annotations

import os

from ..store.filesystem import LOCAL, LocalFilesystem, ObjectFilesystem
from .base import ApiHandler
from .routes import LOG

#: Bytes read per step when looking backwards for line ends.
_CHUNK = 64 * 1024


class LogHandler(ApiHandler):
    """``GET …/runs/:run/logs/:name?tail=N``: the last N lines, as UTF-8 text."""

    async def get(self, experiment: str, run: str, name: str) -> None:
        tail = self.int_argument("tail", None, minimum=0)
        path = await self.call_store(self.store.log_path, experiment, run, name)
        data = await self.call_store(read_tail, path, tail, self.store.fs)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(data.decode("utf-8", "replace").encode("utf-8"))


def read_tail(path: str, lines: int | None, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> bytes:
    """Return the last ``lines`` lines of a file (all of it for None), reading from its end.

    A line ends at ``\\n``; a ``\\r`` before it belongs to the line end. The last
    line counts even without a final newline.
    """
    with filesystem.open_input(path) as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if lines is None:
            return f.read()
        if lines == 0:
            return b""
        end = size
        chunks: list[bytes] = []
        newlines = 0
        while end > 0:
            start = max(0, end - _CHUNK)
            f.seek(start)
            chunk = f.read(end - start)
            chunks.append(chunk)
            # The newline that ends the file closes the last line, so it does not count.
            newlines += chunk.count(b"\n") - (end == size and chunk.endswith(b"\n"))
            end = start
            # Chunks are counted once each, so a line of many megabytes costs linear time.
            if newlines >= lines:
                break
    data = b"".join(reversed(chunks))
    body = data[:-1] if data.endswith(b"\n") else data
    kept = body.split(b"\n")[-lines:]
    text = b"\n".join(kept)
    return text + b"\n" if data.endswith(b"\n") else text


default_handlers = [(LOG, LogHandler)]
