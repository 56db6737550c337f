"""pytest-xdist workers end without tearing the interpreter down.

When a run ends, xdist's controller waits for every worker process to exit. A worker that has
run a hundred integration tests holds a large heap, and the interpreter's finalization (module
teardown, the final collections, freeing every object) took each of them about 1 s of CPU; the
8 workers did it at once on 2 cores, and the tier's last 3.4 s went to it (measured with
``cProfile`` on the controller: ``teardown_nodes`` waiting on the workers' exit).

By the time a worker's ``atexit`` handlers run, its results, reports and logs have gone to the
controller and its channel is closed; nothing it still holds is needed. :func:`install`
registers a handler that runs after every other one (``atexit`` runs them last-registered
first, and this one is registered when the root conftest is imported), flushes what Python
buffers and ends the process with status 0: the controller takes a worker's outcome from its
channel (a failed test, an internal error, a crash), never from its exit status.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys


def _exit_now() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or detached: nothing to flush
            stream.flush()
    os._exit(0)


def install(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Register the quick exit in an xdist worker (``PYTEST_XDIST_WORKER`` set); not elsewhere."""
    if "PYTEST_XDIST_WORKER" not in environ:
        return False
    atexit.register(_exit_now)
    return True
