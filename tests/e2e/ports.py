"""Loopback ports for the daemons the e2e tier starts, chosen so that tests running side by side
(xdist workers) do not take each other's.

Two disjoint ranges, both below 32768, where Linux starts handing out ports to outgoing
connections and to ``bind(0)``:

- a whole stack (``emp up``, ``LocalStack``) moves the default service mapping by an offset
  from ``STACK_OFFSETS``, which puts every daemon port between 9,860 and 19,440;
- a single daemon of the machine tests gets a base port between 20,000 and 32,000.

Every choice is probed (nothing listens on any port it will use). Two tests can still pick the
same free ports in the moment before either listens; a caller that can start again does so
(``STACK_START_TRIES``).
"""

from __future__ import annotations

import random

from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.supervisor import port_in_use

STACK_OFFSETS = range(2_000, 8_000, 10)
DAEMON_BASES = range(20_000, 32_000)
SPAN = 4
"""Ports probed per daemon: per-GPU instances listen on base + i."""
STACK_START_TRIES = 3
TRIES = 200


def free_stack_offset() -> int:
    """An offset that leaves every port of the default mapping's daemons free."""
    bases = [daemon.base_port for daemon in load_mapping(None).daemons.values()]
    for _ in range(TRIES):
        offset = random.choice(STACK_OFFSETS)
        if not any(port_in_use(base + offset + i) for base in bases for i in range(SPAN)):
            return offset
    raise RuntimeError("no free port offset found for a local stack")


def free_base_port() -> int:
    """A port where ``SPAN`` consecutive ports are free."""
    for _ in range(TRIES):
        base = random.choice(DAEMON_BASES)
        if not any(port_in_use(base + i) for i in range(SPAN)):
            return base
    raise RuntimeError("no free port range found")


def lost_a_port_race(error: BaseException) -> bool:
    """Whether a stack failed to start because another process took one of its ports."""
    return "already in use by another process" in str(error)
