"""Rewriting one benchmark's section of ``docs/benchmarks.md`` between its markers."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, heading: str, text: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->``; a
    section that does not exist yet is appended under ``heading``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    document = DOCS.read_text()
    if begin not in document:
        document += f"\n## {heading}\n\n{begin}\n{end}\n"
    head, _, rest = document.partition(begin)
    _, _, tail = rest.partition(end)
    DOCS.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
