"""Testing kit: a private Redis per test session, a namespace per test, fakes of every service,
the API in process and workers in the test's event loop.

Installed with ``emp-job-queue[testing]``, pytest loads the fixtures by itself (the
``pytest11`` entry point names :mod:`emp_queue.testing.pytest_plugin`); docs/testing.md lists
them with examples. This package imports nothing server-side until used: pytest loads the
plugin on a client-only install too, where it must stay quiet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emp_queue.testing.namespaces import delete_namespace, unique_namespace

__all__ = ["delete_namespace", "unique_namespace"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'emp_queue.testing' has no attribute {name!r}")
    return getattr(importlib.import_module("emp_queue.testing.namespaces"), name)
