"""The README's quick start, as blocks of commands and the output they should print.

A block sits between ``<!-- quickstart:NAME -->`` and ``<!-- /quickstart:NAME -->``: an ``sh``
block is commands only; a ``console`` block has ``$ `` commands, each followed by what it prints.
Outputs are compared with what changes from run to run masked (ids, timings, pids, commit ids,
the directory it runs in)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

#: (pattern, replacement), applied in order to the README's text and to what really printed.
MASKS = [
    (re.compile(r"\bi-[0-9a-f]{16}\b"), "i-<id>"),
    (re.compile(r"\bm-[0-9a-f]{16}\b"), "m-<id>"),
    (re.compile(r"\b\d+\.\d+s\b"), "<t>s"),
    (re.compile(r"\blocal:\d+\b"), "local:<pid>"),
    (re.compile(r"^[0-9a-f]{7,40} ", re.MULTILINE), "<commit> "),
    (re.compile(r"(?<!\S)/\S*/demo/"), "<dir>/demo/"),
    (re.compile(r"(?<!\S)/\S*/home/"), "<machine home>/"),
]


@dataclass
class Step:
    command: str
    expected: str  # masked


def block(name: str, text: str | None = None) -> tuple[str, str]:
    """(fence language, body) of the README's block ``name``."""
    text = README.read_text() if text is None else text
    start, end = f"<!-- quickstart:{name} -->", f"<!-- /quickstart:{name} -->"
    if text.count(start) != 1 or text.count(end) != 1:
        raise AssertionError(f"README.md needs exactly one {start} ... {end}")
    inner = text.split(start, 1)[1].split(end, 1)[0].strip()
    match = re.fullmatch(r"```(\w+)\n(.*)\n```", inner, flags=re.DOTALL)
    if match is None:
        raise AssertionError(f"quickstart:{name} is not one fenced block")
    return match.group(1), match.group(2)


def commands(name: str, text: str | None = None) -> list[str]:
    lang, body = block(name, text)
    assert lang == "sh", f"quickstart:{name} is {lang}, not sh"
    return [line for line in body.splitlines() if line.strip() and not line.startswith("#")]


def steps(name: str, text: str | None = None) -> list[Step]:
    lang, body = block(name, text)
    assert lang == "console", f"quickstart:{name} is {lang}, not console"
    out: list[Step] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append(Step(line[2:], ""))
        elif not out:
            raise AssertionError(f"quickstart:{name} starts with output: {line!r}")
        else:
            out[-1].expected += line + "\n"
    return [Step(s.command, mask(s.expected).rstrip("\n")) for s in out]


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def script(all_steps: list[Step], marker: str) -> str:
    """One bash script running every step in order (variables and the alias carry over), each
    step's output after a line ``<marker> <n>`` and its exit code after ``<marker> rc`` (on a
    line of its own: output need not end with a newline; trailing newlines are not compared)."""
    lines = ["shopt -s expand_aliases"]
    for i, s in enumerate(all_steps):
        lines += [
            f"echo '{marker} {i}'",
            s.command + " 2>&1",
            f"rc=$?; echo; echo '{marker} rc' $rc",
        ]
    return "\n".join(lines) + "\n"


def outputs(printed: str, marker: str) -> list[tuple[str, int]]:
    """(masked output, exit code) per step, from what ``script`` printed."""
    found: list[tuple[str, int]] = []
    for chunk in printed.split(f"{marker} ")[1:]:
        head, _, rest = chunk.partition("\n")
        if head.startswith("rc "):
            found[-1] = (found[-1][0], int(head[3:]))
        else:
            found.append((mask(rest).rstrip("\n"), -1))
    return found
