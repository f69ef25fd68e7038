"""Log files of a run (run.log, console.log), whole or their last lines."""

from __future__ import annotations

import os

from .base import ApiHandler
from .routes import LOG

#: Bytes read per step when looking backwards for line ends.
_CHUNK = 64 * 1024


class LogHandler(ApiHandler):
    """``GET …/runs/:run/logs/:name?tail=N``: the last N lines, as UTF-8 text."""

    async def get(self, experiment: str, run: str, name: str) -> None:
        tail = self.int_argument("tail", None, minimum=0)
        path = await self.call_store(self.store.log_path, experiment, run, name)
        data = await self.call_store(read_tail, path, tail)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(data.decode("utf-8", "replace").encode("utf-8"))


def read_tail(path: str, lines: int | None) -> bytes:
    """Return the last ``lines`` lines of a file (all of it for None), reading from its end.

    A line ends at ``\\n``; a ``\\r`` before it belongs to the line end. The last
    line counts even without a final newline.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if lines is None:
            return f.read()
        if lines == 0:
            return b""
        end = size
        data = b""
        while end > 0:
            start = max(0, end - _CHUNK)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
            # One more newline than lines is needed, unless the file ends without one.
            if data.count(b"\n", 0, len(data) - 1) >= lines:
                break
    body = data[:-1] if data.endswith(b"\n") else data
    kept = body.split(b"\n")[-lines:]
    text = b"\n".join(kept)
    return text + b"\n" if data.endswith(b"\n") else text


default_handlers = [(LOG, LogHandler)]
