"""`fleet machines code run`: code in a machine's stateful kernel (machines.code.run). Its
stdout and stderr are printed as the kernel sends them (the run streamed over
``/rpc/stream``), its results and error once it is done (``--json``: the answer, once)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.errors import FleetError
from fleet.cli.common import EXIT_FAILED, EXIT_OK, SubAction, command, group, to_json

if TYPE_CHECKING:
    from contracts.daemon import code as dc
    from fleet.client import FleetClient

Args = argparse.Namespace
#: The MIME types saved to a file, and the file's extension.
SAVED = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg", "application/pdf": "pdf"}
#: The text shown for a result, the first its bundle has.
SHOWN = ("text/plain", "text/markdown", "text/html")


def register_machine(g: SubAction) -> None:
    code = group(g, "code", "a machine's code interpreter: stateful kernels (python, bash)")
    run = command(code, "run", _run, "run code: code run MACHINE_ID [--context C] [--language L] "
                  "-- CODE (or CODE on stdin)")  # fmt: skip
    run.add_argument("machine_id")
    run.add_argument("--context", help="a context's id (default: the language's default one)")
    run.add_argument("--language", help="python (default) or bash")
    run.add_argument("--timeout", type=float,  # default: the contract's, in _run
                     help="seconds before the kernel is interrupted (state kept)")  # fmt: skip
    run.add_argument("--save-dir", type=Path, default=Path("."),
                     help="where images are saved (default: here)")  # fmt: skip


async def _run(c: FleetClient, a: Args) -> int:
    from contracts.daemon import code as dc

    if a.timeout is None:
        a.timeout = dc.DEFAULT_CODE_TIMEOUT_S
    code = " ".join(a.argv) if a.argv else sys.stdin.read()
    if a.json:
        answer = await c.machines_code_run(a.machine_id, code, language=a.language,
                                           context_id=a.context, timeout_s=a.timeout)  # fmt: skip
        print(to_json(answer))
        return EXIT_OK if answer.error is None else EXIT_FAILED
    r = await _streamed(c, a, code)
    for n, bundle in enumerate(r.results, 1):
        print(_shown(bundle, r.execution_count, n, a.save_dir))
    if r.truncated:
        print("(output truncated: it passed the answer's size cap)", file=sys.stderr)
    if r.error is not None:
        print("\n".join(r.error.traceback) or f"{r.error.name}: {r.error.value}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    return EXIT_OK


async def _streamed(c: FleetClient, a: Args, code: str) -> dc.CodeRunResult:
    """The run's answer, its stdout and stderr printed as they came."""
    from contracts.daemon import code as dc

    stream = c.machines_code_run_stream(a.machine_id, code, language=a.language,
                                        context_id=a.context, timeout_s=a.timeout)  # fmt: skip
    async with contextlib.aclosing(stream) as items:
        async for item in items:
            if isinstance(item, dc.CodeRunResult):
                return item
            if item.kind in ("stdout", "stderr") and item.text:
                out = sys.stdout if item.kind == "stdout" else sys.stderr
                out.write(item.text)
                out.flush()
    raise FleetError("the stream ended without its answer")  # the client raises first


def _shown(bundle: dc.MimeBundle, count: int | None, n: int, save_dir: Path) -> str:
    """A result as text: its saved files named, then its text."""
    lines = []
    for mime, ext in SAVED.items():
        if isinstance(data := bundle.get(mime), str):
            path = save_dir / f"out-{count or 0}-{n}.{ext}"
            raw = data.encode() if mime == "image/svg+xml" else base64.b64decode(data)
            path.write_bytes(raw)
            lines.append(f"[{mime} saved to {path}]")
    text = next((bundle[m] for m in SHOWN if isinstance(bundle.get(m), str)), None)
    if text is not None and not (lines and text.startswith("<IPython.core.display")):
        lines.append(text)
    return "\n".join(lines)
