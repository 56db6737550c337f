"""The monitor: a static page (HTML, ES modules, CSS) shipped as package data.

It holds no data and no secret: the operator types an admin key into it, and everything it
shows comes from the API's REST routes and its ``/ws/monitor`` socket. So its routes need no
key. There is no build step: the files under ``static/`` are what the browser runs (see
docs/decisions/0005-monitor-without-a-build-step.md).
"""

from emp_queue.monitor.routes import STATIC_DIR, mount_monitor

__all__ = ["STATIC_DIR", "mount_monitor"]
