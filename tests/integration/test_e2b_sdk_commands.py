"""E2B's commands and terminals, driven by E2B's own Python SDK (sync and async) against a stack
on the real servers: each a fleetd session on the sandbox's machine (on pipes, or on a
terminal), what the SDK streams is the session's output."""

from __future__ import annotations

from controlplane.settings import Settings
from tests.conftest import running_stack
from tests.e2b_sdk import e2b_settings, python_sdk, sdk_env

__all__ = ["e2b_settings"]  # the fixture, re-exported for pytest


async def test_commands_stream_take_stdin_time_out_list_connect_and_are_killed(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings):
        got = await python_sdk(
            """
            import json
            from e2b import Sandbox, CommandExitException, TimeoutException
            sbx = Sandbox.create(envs={"GREETING": "hi"})
            out = {"id": sbx.sandbox_id}
            r = sbx.commands.run("echo $GREETING $EXTRA; echo to-err >&2; pwd",
                                 envs={"EXTRA": "there"})
            out["run"] = [r.stdout, r.stderr, r.exit_code]
            seen, errs = [], []
            sbx.commands.run("for i in 1 2 3; do echo line$i; done; echo e >&2",
                             on_stdout=seen.append, on_stderr=errs.append)
            out["streamed"] = ["".join(seen), "".join(errs)]
            try:
                sbx.commands.run("echo partial; exit 3")
            except CommandExitException as e:
                out["exit"] = [e.exit_code, e.stdout]
            sbx.commands.run("mkdir -p sub")
            out["cwd"] = sbx.commands.run("pwd", cwd="/home/user/sub").stdout
            try:
                sbx.commands.run("sleep 30", timeout=1)
            except TimeoutException:
                out["timeout"] = True
            fed = sbx.commands.run("cat", background=True, stdin=True)
            sbx.commands.send_stdin(fed.pid, "fed\\n")
            out["listed"] = [p.cmd for p in sbx.commands.list() if p.pid == fed.pid]
            sbx.commands.close_stdin(fed.pid)
            out["stdin"] = fed.wait().stdout
            piped = sbx.commands.run("cat", background=True, stdin=True)
            sbx.commands.stream_input(piped.pid, ["a", b"b", "c\\n"])
            sbx.commands.close_stdin(piped.pid)
            out["stream_input"] = piped.wait().stdout
            bg = sbx.commands.run("echo started; sleep 60", background=True)
            again = sbx.commands.connect(bg.pid)
            out["killed"] = sbx.commands.kill(bg.pid)
            try:
                again.wait()
            except CommandExitException as e:
                out["killed_exit"] = [e.exit_code, e.stdout]
            out["kill_again"] = sbx.commands.kill(bg.pid)
            out["long"] = len(sbx.commands.run("echo " + "a" * 8000).stdout)
            last = sbx.commands.run("sleep 60", background=True)
            sbx.kill()
            try:
                last.wait()
            except TimeoutException as e:
                out["sandbox_killed"] = str(e)
            print(json.dumps(out))
        """,
            sdk_env(e2b_settings),
        )
        assert got["run"][1:] == ["to-err\n", 0]
        assert got["run"][0].startswith("hi there\n")
        assert got["streamed"] == ["line1\nline2\nline3\n", "e\n"]
        assert got["exit"] == [3, "partial\n"]
        assert got["cwd"].strip().endswith("/sub")
        assert got["timeout"] is True
        assert got["listed"] == ["/bin/bash"]
        assert got["stdin"] == "fed\n"
        assert got["stream_input"] == "abc\n"
        assert got["killed"] is True
        assert got["killed_exit"][1] == "started\n"
        assert got["kill_again"] is False
        assert got["long"] == 8001
        assert "sandbox was killed" in got["sandbox_killed"]


async def test_the_async_sdk_runs_commands_and_a_terminal(e2b_settings: Settings) -> None:
    async with running_stack(e2b_settings):
        got = await python_sdk(
            """
            import asyncio, json
            from e2b import AsyncSandbox, CommandExitException, PtySize

            async def main():
                sbx = await AsyncSandbox.create()
                out = {}
                r = await sbx.commands.run("echo async; echo err >&2")
                out["run"] = [r.stdout, r.stderr]
                chunks = []
                term = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=chunks.append)
                await sbx.pty.resize(term.pid, PtySize(rows=40, cols=100))
                await sbx.pty.send_stdin(term.pid, b"stty size; exit 4\\n")
                try:
                    await term.wait()
                except CommandExitException as e:
                    out["pty"] = [b"".join(chunks).decode(errors="replace"), e.exit_code]
                other = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=chunks.append)
                seen = []
                joined = await sbx.pty.connect(other.pid, on_data=seen.append)
                typing = sbx.pty.stream_input(other.pid)
                await typing.send(b"echo jo")
                await typing.send(b"ined-$((2+3))\\n")
                await typing.close()
                for _ in range(200):
                    if b"joined-5" in b"".join(seen):
                        break
                    await asyncio.sleep(0.05)
                out["pty_connect"] = b"joined-5" in b"".join(seen)
                out["pty_kill"] = await sbx.pty.kill(other.pid)
                await joined.disconnect()
                await sbx.kill()
                print(json.dumps(out))

            asyncio.run(main())
        """,
            sdk_env(e2b_settings),
        )
        assert got["run"] == ["async\n", "err\n"]
        text, code = got["pty"]
        assert "40 100" in text
        assert code == 4
        assert got["pty_connect"] is True
        assert got["pty_kill"] is True
