"""The code interpreter on a real machine with real kernels (ipykernel, bash_kernel), through
the whole stack: state across calls, output in order, rich results, errors, a timeout that
keeps the state, contexts that do not see each other, bash, a run's output streamed as it
comes. One machine for the module: each
test works in contexts of its own (or the default one, on names of its own)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from contracts.daemon.code import CodeRunPart
from contracts.errors import CodeContextsLimit, KernelDied, LanguageUnavailable, NotFound
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.code_checks import ANSI, PNG, main_text, pip_installs, streamed_in_order
from tests.conftest import ADMIN_TOKEN, ReadyMachine

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "code-interpreter.md"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mid(ready_machine: ReadyMachine) -> AsyncIterator[str]:
    yield await ready_machine("code")


async def test_state_carries_across_calls(shared_stack: FleetClient, mid: str) -> None:
    first = await shared_stack.machines_code_run(machine_id=mid, code="x = 41")
    assert (first.results, first.error) == ([], None)
    second = await shared_stack.machines_code_run(machine_id=mid, code="x + 1")
    assert main_text(second) == ["42"]
    assert second.execution_count == (first.execution_count or 0) + 1


async def test_output_comes_in_order_with_the_result(shared_stack: FleetClient, mid: str) -> None:
    code = ("import sys\nfor i in range(3):\n    print('out', i, flush=True)\n"
            "    print('err', i, file=sys.stderr, flush=True)\n'done'")  # fmt: skip
    got = await shared_stack.machines_code_run(machine_id=mid, code=code)
    assert "".join(got.stdout) == "out 0\nout 1\nout 2\n"
    assert "".join(got.stderr) == "err 0\nerr 1\nerr 2\n"
    assert main_text(got) == ["'done'"]


async def test_a_displayed_png_is_an_image_result(shared_stack: FleetClient, mid: str) -> None:
    code = f"from IPython.display import Image, display\ndisplay(Image(data={PNG!r}))"
    got = await shared_stack.machines_code_run(machine_id=mid, code=code)
    (image,) = got.results
    assert base64.b64decode(image["image/png"]) == PNG
    assert image["isMain"] is False


async def test_an_exception_is_named_with_its_traceback(
    shared_stack: FleetClient, mid: str
) -> None:
    got = await shared_stack.machines_code_run(machine_id=mid, code="def f():\n    1 / 0\nf()")
    assert got.error is not None
    assert (got.error.name, got.error.value) == ("ZeroDivisionError", "division by zero")
    # Jupyter's traceback, colours (ANSI escapes) included, as IPython shows it.
    plain = ANSI.sub("", "\n".join(got.error.traceback))
    assert "1 / 0" in plain
    assert "f()" in plain


async def test_a_timeout_interrupts_and_keeps_the_state(
    shared_stack: FleetClient, mid: str
) -> None:
    await shared_stack.machines_code_run(machine_id=mid, code="kept = 'still here'")
    spun = await shared_stack.machines_code_run(machine_id=mid, code="while True: pass",
                                                timeout_s=2)  # fmt: skip
    assert spun.error is not None
    assert spun.error.name == "TimeoutError"
    after = await shared_stack.machines_code_run(machine_id=mid, code="kept")
    assert main_text(after) == ["'still here'"]


async def test_contexts_do_not_see_each_other(shared_stack: FleetClient, mid: str) -> None:
    one = await shared_stack.machines_code_create_context(mid)
    two = await shared_stack.machines_code_create_context(mid, cwd="/tmp")
    assert (one.language, two.cwd) == ("python", "/tmp")
    await shared_stack.machines_code_run(machine_id=mid, code="secret = 1", context_id=one.id)
    seen = await shared_stack.machines_code_run(machine_id=mid, code="secret",
                                                context_id=two.id)  # fmt: skip
    assert seen.error is not None
    assert seen.error.name == "NameError"
    cwd = await shared_stack.machines_code_run(machine_id=mid, code="import os; os.getcwd()",
                                               context_id=two.id)  # fmt: skip
    assert main_text(cwd) == ["'/tmp'"]
    listed = await shared_stack.machines_code_list_contexts(mid)
    assert {one.id, two.id} <= {c.id for c in listed.contexts}
    await shared_stack.machines_code_restart_context(mid, one.id)
    cleared = await shared_stack.machines_code_run(machine_id=mid, code="secret",
                                                   context_id=one.id)  # fmt: skip
    assert cleared.error is not None
    assert cleared.error.name == "NameError"
    for ctx in (one, two):
        assert (await shared_stack.machines_code_delete_context(mid, ctx.id)).deleted
    with pytest.raises(NotFound):
        await shared_stack.machines_code_run(machine_id=mid, code="1", context_id=one.id)


async def test_bash(shared_stack: FleetClient, mid: str) -> None:
    got = await shared_stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(got.stdout), got.error, got.context_id) == ("hi\n", None, "default-bash")
    await shared_stack.machines_code_run(machine_id=mid, code="N=7", language="bash")
    again = await shared_stack.machines_code_run(machine_id=mid, code="echo $((N * 6))",
                                                 language="bash")  # fmt: skip
    assert "".join(again.stdout) == "42\n"


async def test_the_kernel_is_the_machines(shared_stack: FleetClient, mid: str) -> None:
    """The kernel runs as the machine's daemon's children run: in its home, with the .env's
    variables and the call's own, and none of the daemon's secrets."""
    code = ("import os\nsorted(k for k in os.environ if k.startswith('FLEET_MACHINE_TOKEN')), "
            "os.getcwd() == os.environ['HOME'], os.environ.get('ONE_CALL')")  # fmt: skip
    got = await shared_stack.machines_code_run(machine_id=mid, code=code, env={"ONE_CALL": "y"})
    assert main_text(got) == ["([], True, 'y')"]
    later = await shared_stack.machines_code_run(machine_id=mid, code="import os\n"
                                                 "os.environ.get('ONE_CALL')")  # fmt: skip
    assert main_text(later) == []  # None: no result, the variable was for that call only


async def test_pip_installs_into_the_machines_site_and_the_next_run_imports_it(
    shared_stack: FleetClient, mid: str, tmp_path: Path
) -> None:
    """``!pip install``, ``%pip install`` and a bash cell's ``pip install`` of an uploaded
    wheel: not the platform's read-only Python, nor Debian's externally managed one, but the
    machine's site in its home, which the next run imports from."""
    await pip_installs(shared_stack, mid, tmp_path)


async def test_a_language_with_no_kernel_names_those_there_are(
    shared_stack: FleetClient, mid: str
) -> None:
    with pytest.raises(LanguageUnavailable) as refused:
        await shared_stack.machines_code_run(machine_id=mid, code="1", language="cobol")
    assert (refused.value.data or {}).get("languages") == ["bash", "python"]


async def test_the_cli_prints_text_and_saves_images(
    mid: str, shared_settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{shared_settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    code = (f"from IPython.display import Image, display\nprint('hello')\n"
            f"display(Image(data={PNG!r}))\n6 * 7")  # fmt: skip
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli import main; main()", "machines", "code", "run", mid,
        "--save-dir", str(tmp_path), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(code.encode()), 60)
    assert cli.returncode == 0, err
    (saved,) = tmp_path.glob("*.png")
    assert saved.read_bytes() == PNG
    assert out.decode().splitlines() == ["hello", f"[image/png saved to {saved}]", "42"]


async def test_a_streamed_run_sends_its_stdout_as_it_comes_then_the_answer(
    shared_stack: FleetClient, mid: str
) -> None:
    await streamed_in_order(shared_stack, mid)


def _page_example(name: str) -> str:
    """docs/code-interpreter.md's ```python block marked ``<!-- example:NAME -->``."""
    (block,) = re.findall(rf"<!-- example:{name} -->\n```python\n(.*?)```", PAGE.read_text(), re.S)
    return str(block)


async def test_the_pages_python_examples_run_as_written(
    mid: str, shared_settings: Settings
) -> None:
    """Each marked block of docs/code-interpreter.md, as written, in a function given the
    ``url``, ``token`` and ``machine_id`` it names; what the streaming one prints is what its
    comments say."""
    url = f"http://127.0.0.1:{shared_settings.port}"
    printed = io.StringIO()
    for name in ("python", "python-stream"):
        source = "async def example(url, token, machine_id):\n" + textwrap.indent(
            _page_example(name), "    "
        )
        scope: dict[str, object] = {}
        exec(compile(source, f"{PAGE}:{name}", "exec"), scope)  # noqa: S102 - the page's own code
        with contextlib.redirect_stdout(printed):
            await scope["example"](url, ADMIN_TOKEN, mid)  # type: ignore[operator]
    assert printed.getvalue().splitlines() == [
        "stdout '0\\n'", "stdout '1\\n'", "stdout '2\\n'",
        "result {'text/plain': \"'done'\", 'isMain': True}",
        "['0\\n', '1\\n', '2\\n'] None",
    ]  # fmt: skip


async def test_a_streamed_run_whose_client_leaves_is_interrupted_and_the_state_kept(
    shared_stack: FleetClient, mid: str
) -> None:
    """The client closes the stream while the code spins: the run is interrupted (as a
    streamed command is killed), so the context's next call runs at once, with its state."""
    ctx = await shared_stack.machines_code_create_context(mid)
    await shared_stack.machines_code_run(mid, "kept = 'here'", context_id=ctx.id)
    code = "print('spinning', flush=True)\nwhile True: pass"
    stream = shared_stack.machines_code_run_stream(mid, code, context_id=ctx.id, timeout_s=3600)
    first = await anext(stream)
    assert isinstance(first, CodeRunPart)
    assert first.text == "spinning\n"
    await stream.aclose()
    # Not interrupted, this call would wait for the spinning run's hour.
    after = await asyncio.wait_for(
        shared_stack.machines_code_run(mid, "kept", context_id=ctx.id), 60
    )
    assert main_text(after) == ["'here'"]
    await shared_stack.machines_code_delete_context(mid, ctx.id)


async def test_a_dead_kernel_is_named_and_the_next_call_starts_a_new_one(
    shared_stack: FleetClient, mid: str
) -> None:
    ctx = await shared_stack.machines_code_create_context(mid)
    try:
        await shared_stack.machines_code_run(machine_id=mid, code="x = 1", context_id=ctx.id)
        with pytest.raises(KernelDied) as died:
            await shared_stack.machines_code_run(
                machine_id=mid, code="import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
                context_id=ctx.id,
            )  # fmt: skip
        assert died.value.code == 1702
        assert died.value.data == {"contextId": ctx.id}
        fresh = await shared_stack.machines_code_run(machine_id=mid, code="'x' in dir()",
                                                     context_id=ctx.id)  # fmt: skip
        assert main_text(fresh) == ["False"]  # a new kernel: the old state is gone
    finally:
        await shared_stack.machines_code_delete_context(mid, ctx.id)


async def test_contexts_past_the_limit_are_refused_by_name(
    shared_stack: FleetClient, mid: str
) -> None:
    made: list[str] = []

    async def fill() -> None:
        for _ in range(20):
            made.append((await shared_stack.machines_code_create_context(mid)).id)

    try:
        with pytest.raises(CodeContextsLimit) as refused:
            await fill()
        assert refused.value.code == 1703
        assert refused.value.data == {"limit": 8}
        assert "FLEET_CODE_CONTEXTS_MAX" in refused.value.message
        assert len((await shared_stack.machines_code_list_contexts(mid)).contexts) == 8
    finally:
        for cid in made:
            await shared_stack.machines_code_delete_context(mid, cid)


async def test_output_past_the_answers_cap_is_cut_and_said(
    shared_stack: FleetClient, mid: str
) -> None:
    got = await shared_stack.machines_code_run(
        machine_id=mid, code="print('x' * 3_000_000, flush=True)\n1 / 0"
    )  # fmt: skip
    assert got.truncated
    assert 0 < len("".join(got.stdout)) < 1_000_000
    assert got.error is not None  # the error is always kept
    assert got.error.name == "ZeroDivisionError"
