"""``python -m battgai bench SECTION [options]``: every side-by-side benchmark, one module per part.

Each section's module (:data:`SECTIONS`) has ``main(argv)``: it prints a markdown table and writes it
into its section of ``docs/BENCHMARKS.md`` with :func:`write_section` (or one block of it with
:func:`write_subsection`). Product code never imports this package; the benches import the product.
"""

from __future__ import annotations

import importlib
import sys

from battgai.core.registry import REPO_ROOT

#: section of docs/BENCHMARKS.md -> the module whose ``main(argv)`` runs it
SECTIONS = {"materials": "battgai.bench.materials", "microstructure": "battgai.bench.microstructure",
            "health": "battgai.bench.health", "load": "battgai.bench.load",
            "bundle": "battgai.bench.materials.bundle", "campaign": "battgai.bench.materials.campaign",
            "dft": "battgai.bench.materials.dft"}
BENCHMARKS_MD = REPO_ROOT / "docs" / "BENCHMARKS.md"


def _markers(task: str) -> tuple[str, str]:
    if task not in SECTIONS:
        raise ValueError(f"section must be one of {tuple(SECTIONS)}, got {task!r}")
    return f"<!-- {task}:start -->", f"<!-- {task}:end -->"


def read_section(task: str) -> str:
    """The text between ``<!-- task:start -->`` and ``<!-- task:end -->`` in BENCHMARKS.md ('' when absent)."""
    start, end = _markers(task)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    if start not in text or end not in text:
        return ""
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def write_section(task: str, markdown: str) -> None:
    """Replace the text between ``<!-- task:start -->`` and ``<!-- task:end -->`` in BENCHMARKS.md."""
    start, end = _markers(task)
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    BENCHMARKS_MD.write_text(text)


def block_markers(name: str) -> tuple[str, str]:
    """The comments that delimit block ``name`` inside a section (one part of a long benchmark)."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(section: str, name: str, block: str) -> str:
    """``section`` with its block ``name`` replaced by ``block`` (which carries the markers); appended when absent."""
    start, end = block_markers(name)
    if start in section and end in section:
        head, rest = section.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return section.rstrip() + "\n\n" + block


def write_subsection(task: str, name: str, markdown: str) -> None:
    """Replace block ``name`` inside ``task``'s section with ``markdown``: one part of a benchmark rerun alone."""
    start, end = block_markers(name)
    write_section(task, replace_block(read_section(task), name, f"{start}\n{markdown.strip()}\n{end}"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SECTIONS:
        raise SystemExit(f"usage: python -m battgai bench {{{','.join(SECTIONS)}}} [options]")
    importlib.import_module(SECTIONS[argv[0]]).main(argv[1:])
