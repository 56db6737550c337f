"""Finding connectors: the built-in ones and third-party ones from entry points.

A third-party package exposes its connector class in its ``pyproject.toml``::

    [project.entry-points."emp_queue.connectors"]
    my-service = "my_package.connector:MyConnector"

The built-in connectors are registered the same way by this distribution, so there is one
lookup path for all of them.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from emp_queue.connectors.base import Connector
from emp_queue.errors import ConfigurationError

ENTRY_POINT_GROUP = "emp_queue.connectors"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def known_connectors() -> list[str]:
    """Names of every installed connector, sorted."""
    return sorted(_entry_points())


def load_connector(kind: str) -> type[Connector]:
    """The connector class registered as ``kind``; a clear error listing the known ones."""
    point = _entry_points().get(kind)
    if point is None:
        raise ConfigurationError(
            f"unknown connector {kind!r}; known connectors: {', '.join(known_connectors())}"
        )
    loaded = point.load()
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        raise ConfigurationError(
            f"entry point {point.value!r} for connector {kind!r} is not a Connector subclass"
        )
    return loaded
