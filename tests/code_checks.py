"""The code interpreter's rules on one machine of any runtime, as one walk: a streamed run's
stdout in order before its answer, a displayed PNG, an exception's name and traceback, a
timeout that keeps the state, two contexts that do not see each other, and bash. The local
runtime has a test per rule (tests/integration/test_code_interpreter.py); the gvisor and docker
modules walk them once each on their own machines."""

from __future__ import annotations

import base64
import contextlib
import os
import re

from contracts.daemon_code import CodeRunPart, CodeRunResult
from fleet.client import FleetClient

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def main_text(result: CodeRunResult) -> list[str]:
    return [r["text/plain"] for r in result.results if r.get("isMain")]


async def streamed_in_order(stack: FleetClient, mid: str) -> None:
    """The code prints, then waits for a file the test writes only once it holds that first
    part: the part came while the code still ran, before the rest and the answer."""
    go = f"go-{os.urandom(6).hex()}"
    code = (f"import os, time\nprint('waiting', flush=True)\nfor _ in range(1200):\n"
            f"    if os.path.exists({go!r}): break\n    time.sleep(0.05)\n"
            f"print('seen' if os.path.exists({go!r}) else 'never', flush=True)\n"
            "'done'")  # fmt: skip
    items: list[CodeRunPart | CodeRunResult] = []
    stream = stack.machines_code_run_stream(mid, code, timeout_s=120)
    async with contextlib.aclosing(stream) as parts:
        async for item in parts:
            items.append(item)
            if len(items) == 1:
                assert item == CodeRunPart(seq=0, kind="stdout", text="waiting\n")
                await stack.write_file(mid, go, "")
    *streamed, answer = items
    assert isinstance(answer, CodeRunResult)
    assert [(p.kind, p.text) for p in streamed if isinstance(p, CodeRunPart)] == [
        ("stdout", "waiting\n"), ("stdout", "seen\n"), ("result", None)
    ]  # fmt: skip
    assert (answer.stdout, main_text(answer)) == (["waiting\n", "seen\n"], ["'done'"])


async def every_rule(stack: FleetClient, mid: str) -> None:
    await streamed_in_order(stack, mid)
    run = stack.machines_code_run
    code = f"from IPython.display import Image, display\ndisplay(Image(data={PNG!r}))"
    (image,) = (await run(machine_id=mid, code=code)).results
    assert base64.b64decode(image["image/png"]) == PNG
    failed = await run(machine_id=mid, code="def f():\n    1 / 0\nf()")
    assert failed.error is not None
    assert (failed.error.name, failed.error.value) == ("ZeroDivisionError", "division by zero")
    assert "1 / 0" in ANSI.sub("", "\n".join(failed.error.traceback))
    await run(machine_id=mid, code="kept = 'still here'")
    spun = await run(machine_id=mid, code="while True: pass", timeout_s=2)
    assert spun.error is not None
    assert spun.error.name == "TimeoutError"
    assert main_text(await run(machine_id=mid, code="kept")) == ["'still here'"]
    other = await stack.machines_code_create_context(mid)
    unseen = await run(machine_id=mid, code="kept", context_id=other.id)
    assert unseen.error is not None
    assert unseen.error.name == "NameError"
    await run(machine_id=mid, code="N=7", language="bash")
    again = await run(machine_id=mid, code="echo $((N * 6))", language="bash")
    assert ("".join(again.stdout), again.error) == ("42\n", None)
