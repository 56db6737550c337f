"""Job requirements: the keys the matcher knows, their validation and normal form.

A requirement set is validated at submit time: an unknown key or a value the
matcher cannot interpret is an error, never a job that silently never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emp_queue.errors import InvalidJobError, UnknownRequirementError
from emp_queue.labels import check_scalar, is_number, validate_label_tree

REQUIREMENT_KEYS: tuple[str, ...] = (
    "service_type",
    "hardware",
    "models",
    "nodes",
    "customer_isolation",
    "pool",
    "positive_requirements",
    "negative_requirements",
    "derive",
)
HARDWARE_KEYS: tuple[str, ...] = ("gpu_count", "gpu_memory_gb", "gpu_model", "cpu_cores", "ram_gb")
ISOLATION_LEVELS: tuple[str, ...] = ("none", "loose", "strict")


def _require_str_or_list(value: object, where: str) -> None:
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return
    raise InvalidJobError(f"{where}: expected a non-empty string or list of strings, got {value!r}")


def _validate_hardware(hardware: object) -> None:
    if not isinstance(hardware, Mapping) or not hardware:
        raise InvalidJobError(
            f"requirements.hardware: expected an object with some of {', '.join(HARDWARE_KEYS)}"
        )
    for key, value in hardware.items():
        if key not in HARDWARE_KEYS:
            known = ", ".join(HARDWARE_KEYS)
            raise UnknownRequirementError(
                f"requirements.hardware: unknown key {key!r}; known keys: {known}"
            )
        where = f"requirements.hardware.{key}"
        if key == "gpu_model":
            _require_str_or_list(value, where)
        elif not is_number(value) or value < 0:
            raise InvalidJobError(f"{where}: expected a minimum as a number >= 0, got {value!r}")
        else:
            check_scalar(value, where)


def validate_requirements(requirements: Mapping[str, Any], service: str) -> dict[str, Any]:
    """Return the requirements in normal form, or raise naming the offending key."""
    for key in requirements:
        if key not in REQUIREMENT_KEYS:
            raise UnknownRequirementError(
                f"unknown requirement {key!r}; the matcher knows: {', '.join(REQUIREMENT_KEYS)}"
            )
    normal: dict[str, Any] = {}
    for key, value in requirements.items():
        if key == "service_type":
            if value != service:
                raise InvalidJobError(
                    f"requirements.service_type {value!r} differs from service_required "
                    f"{service!r}; drop it or make them equal"
                )
            continue
        if key == "derive":
            if not isinstance(value, bool):
                raise InvalidJobError(
                    f"requirements.derive: expected true or false, got {value!r}; false keeps "
                    "only the explicit requirements (no models or nodes read from the payload)"
                )
            continue
        if key == "hardware":
            _validate_hardware(value)
        elif key in ("models", "nodes"):
            if not isinstance(value, list) or not value:
                raise InvalidJobError(f"requirements.{key}: expected a non-empty list of names")
            _require_str_or_list(value, f"requirements.{key}")
            value = sorted(set(value))
        elif key == "customer_isolation":
            if value not in ISOLATION_LEVELS:
                raise InvalidJobError(
                    f"requirements.customer_isolation: {value!r} is not one of "
                    f"{', '.join(ISOLATION_LEVELS)}"
                )
            if value == "none":
                continue
        elif key == "pool":
            _require_str_or_list(value, "requirements.pool")
        else:
            if not isinstance(value, Mapping):
                raise InvalidJobError(f"requirements.{key}: expected an object of label rules")
            validate_label_tree(value, f"requirements.{key}")
        normal[key] = value
    return normal
