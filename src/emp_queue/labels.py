"""Label values: what a worker label or a requirement value may be.

Shared by the job requirements and the worker capabilities so both sides of a
match are held to the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from emp_queue.errors import InvalidJobError

# Lua (the claim script) represents numbers as doubles: beyond 2**53 the two
# implementations of the predicate would disagree, so such numbers are refused.
MAX_EXACT_NUMBER = 2**53


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_scalar(value: object, where: str) -> None:
    if isinstance(value, bool | str):
        return
    if is_number(value):
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number) or abs(number) > MAX_EXACT_NUMBER:
            raise InvalidJobError(f"{where}: number {value!r} must be finite and within ±2**53")
        return
    raise InvalidJobError(
        f"{where}: {value!r} is not a string, number or boolean; "
        "requirements compare strings, numbers, booleans, lists of them and nested objects"
    )


def validate_label_tree(value: object, where: str, *, allow_empty: bool = False) -> None:
    """Check a requirement (or label) value is one the matcher interprets identically in Lua.

    Empty lists and objects are refused in requirements: JSON decoding in Lua cannot
    tell ``[]`` from ``{}``, and neither constrains anything.
    """
    if isinstance(value, Mapping):
        if not value and not allow_empty:
            raise InvalidJobError(f"{where}: an empty object requires nothing; remove it")
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise InvalidJobError(f"{where}: keys must be non-empty strings, got {key!r}")
            validate_label_tree(item, f"{where}.{key}", allow_empty=allow_empty)
        return
    if isinstance(value, list):
        if not value and not allow_empty:
            raise InvalidJobError(f"{where}: an empty list requires nothing; remove it")
        for index, item in enumerate(value):
            check_scalar(item, f"{where}[{index}]")
        return
    check_scalar(value, where)
