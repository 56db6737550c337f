"""Testing kit: a private Redis per test session, a namespace per test, fakes of every service,
the API in process and workers in the test's event loop.

Installed with ``emp-job-queue[testing]``, pytest loads the fixtures by itself (the
``pytest11`` entry point names :mod:`emp_queue.testing.pytest_plugin`); docs/testing.md lists
them with examples.
"""

from emp_queue.testing.namespaces import delete_namespace, unique_namespace

__all__ = ["delete_namespace", "unique_namespace"]
