"""What a build produces for one service."""

from __future__ import annotations

from dataclasses import dataclass

from emp_queue.env.interfaces import ServiceVariable
from emp_queue.env.pool import Resolved


@dataclass(frozen=True)
class OutputVariable:
    variable: ServiceVariable
    resolved: Resolved

    @property
    def secret(self) -> bool:
        return self.variable.secret or self.resolved.secret


@dataclass(frozen=True)
class ServiceEnv:
    service: str
    variables: tuple[OutputVariable, ...]
    defaulted: tuple[ServiceVariable, ...]

    def values(self, *, secret: bool) -> dict[str, str]:
        return {
            out.variable.env_name: out.resolved.value
            for out in self.variables
            if out.secret == secret
        }
