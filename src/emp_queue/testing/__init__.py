"""Testing kit: a private Redis per test session, a namespace per test.

Use it from a ``conftest.py`` with ``pytest_plugins = ["emp_queue.testing.pytest_plugin"]``.
"""

from emp_queue.testing.namespaces import delete_namespace, unique_namespace

__all__ = ["delete_namespace", "unique_namespace"]
