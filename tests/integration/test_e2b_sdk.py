"""The E2B front driven by E2B's own SDKs, unmodified (tests/e2b_sdk.py): the Python SDK, sync
and async, and its code interpreter, and the JavaScript SDKs under node, against a stack on
the real servers; what one SDK does, fleetd's own API sees. (Pause and connect with memory:
tests/integration/test_e2b_gvisor.py; who may do what: test_e2b_walls.py.)"""

from __future__ import annotations

from contracts.models import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import running_stack
from tests.e2b_sdk import e2b_settings, js_sdk, python_sdk, sdk_env

__all__ = ["e2b_settings"]  # the fixture, re-exported for pytest


async def test_the_python_sdk_makes_lists_writes_reads_and_kills_a_sandbox(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings) as client:
        got = await python_sdk(
            """
            import json, time
            from e2b import Sandbox, SandboxQuery
            sbx = Sandbox.create(metadata={"suite": "e2b"}, envs={"GREETING": "hi"})
            info = sbx.get_info()
            listed = [s.sandbox_id for s in Sandbox.list(
                query=SandboxQuery(metadata={"suite": "e2b"})).next_items()]
            wrote = sbx.files.write("notes/a.txt", "written by the SDK")
            sbx.files.write_files([{"path": "/home/user/b.bin", "data": b"\\x00\\x01"}])
            big = bytes(range(256)) * 20_000
            sbx.files.write("big.bin", big)
            entries = sorted(e.name for e in sbx.files.list("/home/user"))
            out = {"id": sbx.sandbox_id, "template": info.template_id, "state": info.state.value,
                   "metadata": info.metadata, "listed": listed, "path": wrote.path,
                   "read": sbx.files.read("notes/a.txt"),
                   "bytes": list(sbx.files.read("b.bin", format="bytes")),
                   "big": sbx.files.read("big.bin", format="bytes") == big,
                   "entries": entries, "exists": [sbx.files.exists("notes"),
                                                  sbx.files.exists("nope")],
                   "kind": sbx.files.get_info("notes").type.value}
            sbx.files.remove("notes")
            out["removed"] = not sbx.files.exists("notes")
            watcher = sbx.files.watch_dir("/home/user", recursive=True)
            sbx.files.write("watched.txt", "seen")
            changes = []
            for _ in range(100):
                changes += [[e.name, e.type.value] for e in watcher.get_new_events()]
                if ["watched.txt", "write"] in changes:
                    break
                time.sleep(0.05)
            watcher.stop()
            out["changes"] = changes
            sbx.set_timeout(120)
            out["running"] = sbx.is_running()
            print(json.dumps(out))
        """,
            sdk_env(e2b_settings),
        )
        assert got["template"] == "base"
        assert (got["state"], got["metadata"]) == ("running", {"suite": "e2b"})
        assert got["listed"] == [got["id"]]
        assert (got["path"], got["read"], got["bytes"]) == (
            "/home/user/notes/a.txt", "written by the SDK", [0, 1])  # fmt: skip
        assert got["big"] is True
        assert {"b.bin", "big.bin", "notes"} <= set(got["entries"])
        assert got["exists"] == [True, False]
        assert (got["kind"], got["removed"], got["running"]) == ("dir", True, True)
        assert got["changes"] == [["watched.txt", "create"], ["watched.txt", "write"]]
        await fleet_sees_the_sdks_file(client, got["id"])
        killed = await python_sdk(f"""
            import json
            from e2b import Sandbox
            print(json.dumps([Sandbox.kill({got["id"]!r}), Sandbox.kill({got["id"]!r})]))
        """, sdk_env(e2b_settings))  # fmt: skip
        assert killed == [True, False]
        machine = await client.get_machine(got["id"])
        assert machine.status in (MachineStatus.ARCHIVING, MachineStatus.ARCHIVED)


async def fleet_sees_the_sdks_file(client: FleetClient, machine_id: str) -> None:
    """What the SDK wrote is what ``fleet machines exec`` reads."""
    done = await client.exec(machine_id, ["od", "-An", "-tu1", "b.bin"])
    assert (done.exit_code, done.stdout.split()) == (0, ["0", "1"])
    machine = await client.get_machine(machine_id)
    assert machine.status is MachineStatus.READY


async def test_the_async_sdk_and_its_timeout(e2b_settings: Settings) -> None:
    async with running_stack(e2b_settings):
        got = await python_sdk(
            """
            import asyncio, json, time
            from e2b import AsyncSandbox
            async def main():
                sbx = await AsyncSandbox.create(timeout=2)
                await sbx.files.write("x.txt", "async")
                read = await sbx.files.read("x.txt")
                running = await sbx.is_running()
                began = time.monotonic()
                while await sbx.is_running() and time.monotonic() - began < 60:
                    await asyncio.sleep(0.2)
                ended = not await sbx.is_running()
                listed = [s.sandbox_id for s in await (AsyncSandbox.list()).next_items()]
                print(json.dumps({"read": read, "running": running, "ended": ended,
                                  "gone": sbx.sandbox_id not in listed}))
            asyncio.run(main())
        """,
            sdk_env(e2b_settings),
        )
        assert got == {"read": "async", "running": True, "ended": True, "gone": True}


async def test_the_code_interpreter_streams_rich_results_errors_and_contexts(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings):
        got = await python_sdk(
            """
            import json
            from e2b_code_interpreter import Sandbox
            sbx = Sandbox.create()
            seen = []
            run = sbx.run_code("print('hello'); 40 + 2", on_stdout=lambda m: seen.append(m.line))
            png = sbx.run_code(
                "import io\\nfrom PIL import Image as I\\nfrom IPython.display import Image\\n"
                "b = io.BytesIO(); I.new('RGB', (4, 4), 'red').save(b, 'PNG')\\n"
                "Image(data=b.getvalue())")
            err = sbx.run_code("1 / 0")
            ctx = sbx.create_code_context(cwd="/home/user")
            sbx.run_code("x = 7", context=ctx)
            bash = sbx.run_code("echo from-bash", language="bash")
            out = {"text": run.text, "stdout": run.logs.stdout, "seen": seen,
                   "png": [bool(r.png) for r in png.results],
                   "error": [err.error.name, err.error.value],
                   "ctx": [ctx.language, ctx.cwd], "kept": sbx.run_code("x", context=ctx).text,
                   "listed": [c.id for c in sbx.list_code_contexts()] == [ctx.id],
                   "bash": bash.logs.stdout}
            sbx.remove_code_context(ctx)
            out["removed"] = sbx.list_code_contexts() == []
            sbx.kill()
            print(json.dumps(out))
        """,
            sdk_env(e2b_settings),
        )
        assert (got["text"], got["stdout"], got["seen"]) == ("42", ["hello\n"], ["hello\n"])
        assert got["png"] == [True]
        assert got["error"] == ["ZeroDivisionError", "division by zero"]
        assert got["ctx"] == ["python", "/home/user"]
        assert (got["kept"], got["listed"], got["removed"]) == ("7", True, True)
        assert got["bash"] == ["from-bash\n"]


async def test_the_javascript_sdks_make_a_sandbox_run_commands_write_read_and_run_code(
    e2b_settings: Settings,
) -> None:
    async with running_stack(e2b_settings):
        got = await js_sdk("basics", sdk_env(e2b_settings))
        assert got["read"] == "written by node"
        assert got["text"] == "42"
        assert got["png"] is True
        assert got["command"] == ["from-node\n", "to-err\n", 5]
        assert got["pty"] is True
        assert (got["paused"], got["kept"]) == (True, "written by node")
        assert got["killed"] is True


async def test_get_host_names_a_url_that_reaches_the_sandboxs_port(e2b_settings: Settings) -> None:
    """What a reverse proxy with a wildcard certificate hands over: the request with the host
    name ``get_host`` answered."""
    async with running_stack(e2b_settings):
        got = await python_sdk(
            """
            import json, os, time, urllib.error, urllib.request
            from e2b_code_interpreter import Sandbox
            sbx = Sandbox.create()
            sbx.files.write("site/index.html", "served from the sandbox")
            sbx.run_code("import subprocess, sys\\n"
                         "subprocess.Popen([sys.executable, '-m', 'http.server', '8001',"
                         " '--directory', 'site'])")
            host = sbx.get_host(8001)
            api = os.environ["E2B_SANDBOX_URL"]
            body, began = None, time.monotonic()
            while body is None and time.monotonic() - began < 60:
                try:
                    req = urllib.request.Request(api + "/index.html", headers={"Host": host})
                    body = urllib.request.urlopen(req).read().decode()
                except (urllib.error.URLError, ConnectionError):  # not serving yet: 502
                    time.sleep(0.2)
            print(json.dumps({"host": host, "id": sbx.sandbox_id, "body": body}))
        """,
            sdk_env(e2b_settings),
        )
        assert got["host"] == f"8001-{got['id']}.localhost:{e2b_settings.e2b_port}"
        assert got["body"] == "served from the sandbox"


async def test_metrics_network_signed_urls_a_beta_pause_and_a_context_restart(
    e2b_settings: Settings,
) -> None:
    """The rest of the SDK's surface: each call a fleetd method, what fleetd then holds."""
    async with running_stack(e2b_settings) as client:
        got = await python_sdk(
            """
            import json, os, time, urllib.request
            from e2b_code_interpreter import Sandbox
            sbx = Sandbox.create()
            ctx = sbx.create_code_context()
            sbx.run_code("y = 5", context=ctx)
            sbx.restart_code_context(ctx)
            out = {"id": sbx.sandbox_id,
                   "restarted": sbx.run_code("y", context=ctx).error.name}
            sbx.update_network({"allow_out": ["10.1.2.3"], "deny_out": ["0.0.0.0/0"]})
            began, metrics = time.monotonic(), []
            while not metrics and time.monotonic() - began < 60:  # sampled every 5 s
                metrics = sbx.get_metrics()
                time.sleep(0.5)
            out["metrics"] = [m.mem_total > 0 and m.cpu_count > 0 for m in metrics][:1]
            # A signed URL names its sandbox by host name only: sent as a proxy for
            # *.{domain} would send it (E2B_SANDBOX_URL carries no host of its own).
            host = sbx.get_host(49983)
            up = urllib.request.Request(sbx.upload_url("signed.txt"), headers={"Host": host},
                                        data=b"sent signed", method="POST")
            up.add_header("Content-Type", "application/octet-stream")
            out["uploaded"] = urllib.request.urlopen(up).status
            down = urllib.request.Request(sbx.download_url("signed.txt"), headers={"Host": host})
            out["downloaded"] = urllib.request.urlopen(down).read().decode()
            out["paused"] = sbx.beta_pause()
            out["back"] = Sandbox.connect(sbx.sandbox_id).files.read("signed.txt")
            print(json.dumps(out))
        """,
            sdk_env(e2b_settings),
        )
        assert got["restarted"] == "NameError"  # the restart cleared the context's state
        assert got["metrics"] == [True]
        assert (got["uploaded"], got["downloaded"]) == (200, "sent signed")
        assert (got["paused"], got["back"]) == (True, "sent signed")
        machine = await client.get_machine(got["id"])
        policy = await client.get_network_policy(machine.instance_id)
        assert (policy.egress.default, policy.egress.allow) == ("deny", ["10.1.2.3"])
