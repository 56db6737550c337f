"""Environment builder: components → service interfaces → profiles → per-service env files."""

from __future__ import annotations

from emp_queue.env.pack import load_packed_env

__all__ = ["load_packed_env"]
