"""Run a module as ``python -m`` would, ending with the process that started it (Linux).

Usage: ``python -m expman_tornado.jupyter.launch PARENT_PID MODULE [ARGS...]``.

The standalone server starts its Jupyter child through this module. The
child first requests SIGTERM from Linux for when its parent exits
(``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), so a parent killed by
SIGKILL leaves no Jupyter server behind. It is done here, in the child,
rather than in a ``preexec_fn``, which is unsafe in a parent that runs threads.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


def end_with_parent(parent_pid: int) -> None:
    """Request SIGTERM for when the parent exits, and exit at once if it is gone already."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # NOTE: without prctl the child ends only when the parent stops it.
    # The parent may have died before prctl ran, and then no signal will come.
    if os.getppid() != parent_pid:
        sys.exit("expman-tornado (pid %d) exited before its Jupyter server started" % parent_pid)


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit("usage: python -m expman_tornado.jupyter.launch PARENT_PID MODULE [ARGS...]")
    end_with_parent(int(argv[1]))
    module = argv[2]
    sys.argv = [module, *argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv)
