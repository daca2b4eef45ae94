"""The benchmarks page's table, from the figures file ``./run bench --json`` writes
(``docs/benchmarks.json``): one current run, rendered at build time; earlier runs live in git."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import msgspec

from docsite.schema_text import cell

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.json"
#: Where benchmarks.md gets the table, and how each benchmark measures.
MARKER = "<!-- benchmark figures -->"
METHODS_MARKER = "<!-- benchmark methods -->"
#: A benchmark is a module of bench/ whose docstring starts "Benchmark N".
_NUMBERED = re.compile(r"^Benchmark (\d+)")
BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"
#: How the docs were made is not what the benchmarks measure: dropped from the docstrings.
_HISTORY = re.compile(r",? ?\(?\b(of |in )?issues? \d+( and \d+)?( items? [\d, and]+)?\)?", re.I)


def table_markdown(path: Path = FIGURES) -> str:
    if not path.exists():
        return f"No figures recorded yet: `./run bench --json` writes `{path.name}`."
    run: dict[str, Any] = msgspec.json.decode(path.read_bytes())
    out = _run_lines(run)
    out += ["| # | figure | value | baseline | ratio | target | |", "|---|---|---|---|---|---|---|"]
    for f in run["figures"]:
        base = (
            f"{f['baseline_name']} {_fmt(f['baseline'], f['unit'])}"
            if f["baseline"] is not None
            else ""
        )
        ratio = f"{f['ratio']:.2f}x" if f["ratio"] is not None else ""
        met = {True: "met", False: "**missed**", None: ""}[f["met"]] if f["target"] else ""
        value = _fmt(f["value"], f["unit"])
        name = f["name"] + (f" ({f['note']})" if f["note"] else "")
        row = [f["bench"], name, value, base, ratio, f["target"], met]
        out.append("| " + " | ".join(cell(str(c)) for c in row) + " |")
    out += [""] + [f"- skipped: {cell(s)}" for s in run.get("skipped", [])]
    return "\n".join(out) + "\n"


def _run_lines(run: dict[str, Any]) -> list[str]:
    machine: dict[str, str] = run.get("machine", {})
    if not machine:
        return []
    lines = [f"Run of `{run.get('command', 'python -m bench')}`", ""]
    lines += [f"- {key}: {cell(value)}" for key, value in machine.items()]
    if "loadAverageAtEnd" in run:
        lines.append(f"- load average at the end: {run['loadAverageAtEnd']}")
    if "elapsedS" in run:
        lines.append(f"- took {run['elapsedS']:.0f} s")
    for later in run.get("laterRuns", []):
        lines.append(f"- benchmark(s) {', '.join(later['benches'])}: from a later run on the same "
                     f"host, `{later['command']}` ({later['elapsedS']:.0f} s; load average at "
                     f"the end {later['loadAverageAtEnd']})")  # fmt: skip
    return [*lines, ""]


def _fmt(value: float | None, unit: str) -> str:
    from bench.common import fmt  # the same formatting as the terminal's summary

    return fmt(value, unit)


def benchmark_docs() -> list[tuple[int, str, str]]:
    """(number, title, description) of every benchmark module, in order."""
    found = []
    for path in sorted(BENCH_DIR.glob("*.py")):
        doc = inspect.getdoc(importlib.import_module(f"bench.{path.stem}")) or ""
        if match := _NUMBERED.match(doc):
            title, _, body = doc.partition("\n\n")
            found.append((int(match.group(1)), " ".join(title.split()), body))
    return sorted(found)


def methods_markdown() -> str:
    """Each benchmark's docstring: what it runs, against which baseline, in the same run."""
    out: list[str] = []
    for _, title, body in benchmark_docs():
        out += [
            f"### {_HISTORY.sub('', title).rstrip(' .:')}",
            "",
            _HISTORY.sub("", body).strip(),
            "",
        ]
    return "\n".join(out)
