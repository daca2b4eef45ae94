"""The code interpreter's rules on one machine of any runtime, as one walk: a streamed run's
stdout in order before its answer, a displayed PNG, an exception's name and traceback, a
timeout that keeps the state, two contexts that do not see each other, bash, and a wheel
uploaded to the machine installed by ``!pip``, ``%pip`` and bash's ``pip``, each imported by
the next run. The local runtime has a test per rule (tests/integration/test_code_interpreter.py);
the gvisor and docker modules walk them once each on their own machines."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import zipfile
from pathlib import Path

from contracts.daemon.code import CodeRunPart, CodeRunResult
from fleet.client import FleetClient

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


#: Where ``pip install`` in a code interpreter puts a package (docs/code-interpreter.md).
MACHINE_SITE = "~/.fleet/python/lib/"


def main_text(result: CodeRunResult) -> list[str]:
    return [r["text/plain"] for r in result.results if r.get("isMain")]


def make_wheel(directory: Path, module: str) -> Path:
    """A wheel of one module, ``module.N = 42``, written in ``directory`` (no build backend,
    no network)."""
    name = module.replace("_", "-")
    info = f"{module}-1.0.dist-info/"
    files = {f"{module}.py": b"N = 42\n",
             info + "METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             info + "WHEEL": b"Wheel-Version: 1.0\nGenerator: fleetd-tests\n"
                             b"Root-Is-Purelib: true\nTag: py3-none-any\n"}  # fmt: skip

    def digest(data: bytes) -> str:
        raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        return f"sha256={raw.decode()}"

    record = "".join(f"{n},{digest(b)},{len(b)}\n" for n, b in files.items())
    path = directory / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for n, b in files.items():
            wheel.writestr(n, b)
        wheel.writestr(info + "RECORD", record + info + "RECORD,,\n")
    return path


#: Each way a user runs pip in the machine: (the code interpreter's language, or None for a
#: command of machines.exec, as in a terminal; the command before its arguments; the module its
#: wheel holds).
PIP_WAYS = (("python", "!pip install", "fleet_probe_shell"),
            ("python", "%pip install", "fleet_probe_magic"),
            ("bash", "pip install", "fleet_probe_bash"),
            (None, "~/.fleet/python/bin/pip install", "fleet_probe_exec"))  # fmt: skip


async def pip_installs(stack: FleetClient, mid: str, where: Path) -> None:
    """A wheel uploaded to the machine, installed each way (no index: the wheel is all it
    needs); the next run imports it, from the machine's site in its home."""
    for language, pip, module in PIP_WAYS:
        wheel = make_wheel(where, module)
        await stack.upload(mid, wheel, wheel.name)
        said = await _ran(stack, mid, language, f"{pip} --no-index {wheel.name}")
        assert f"Successfully installed {module.replace('_', '-')}-1.0" in said, said
        check = (
            f"import os, {module}\n{module}.N, "
            f"{module}.__file__.startswith(os.path.expanduser({MACHINE_SITE!r}))"
        )
        imported = await stack.machines_code_run(machine_id=mid, code=check)
        assert imported.error is None, imported.error
        assert main_text(imported) == ["(42, True)"]


async def _ran(stack: FleetClient, mid: str, language: str | None, code: str) -> str:
    """What ``code`` said, run in a kernel of ``language`` (None: by ``sh`` in an exec)."""
    if language is None:
        done = await stack.exec(mid, ["sh", "-c", code], timeout_s=120)
        assert done.exit_code == 0, done.stdout + done.stderr
        return done.stdout + done.stderr
    got = await stack.machines_code_run(machine_id=mid, code=code, language=language)
    said = "".join(got.stdout + got.stderr)
    assert got.error is None, said
    return said


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


async def every_rule(stack: FleetClient, mid: str, where: Path) -> None:
    """Every rule above on the machine; ``where``: a directory for the wheels it uploads."""
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
    await pip_installs(stack, mid, where)
