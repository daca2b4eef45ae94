"""The `fleet` CLI as scripts and people use it, against the worker's shared `fleet up` (each
test makes its own instance, or uses the module's ready machine read-only)."""

from __future__ import annotations

import json
import os
import pty
import secrets
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fleet.cli.entry import EXIT_API, EXIT_UNREACHABLE, EXIT_USAGE
from fleet.up.embedded import PortHold
from tests.e2e.conftest import FLEET, FleetUp, ok

STAGES = ["created", "provisioned", "daemon-status-reported", "setup-pushed", "ready"]


@pytest.fixture
def stack(shared_fleet_up: FleetUp) -> FleetUp:
    """The worker's shared `fleet up` (tests/e2e/conftest.py): no test here stops or
    reconfigures it, and each makes instances of its own or reads the module's ready machine."""
    return shared_fleet_up


@dataclass
class Ready:
    instance_id: str
    machine_id: str
    created: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def ready(shared_fleet_up: FleetUp) -> Ready:
    """An instance with an env var and a machine made with `machines create --wait`."""
    up = shared_fleet_up
    iid = json.loads(up.cli("--json", "instances", "create", "cli-demo").stdout)["id"]
    assert up.cli("env", "set", "GREETING", "hello", "--instance", iid).returncode == 0
    created = up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    machine = json.loads(up.cli("machines", "list", "--instance", iid, "--json").stdout)[0]
    return Ready(iid, machine["id"], created)


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """For output with no event to await (a process's log): ask again until it is there. Each
    check is a CLI run, so the loop paces itself."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"


def test_instances_and_env_as_json(stack: FleetUp) -> None:
    inst = json.loads(ok(stack.cli("--json", "instances", "create", "scripted")))
    assert inst["name"] == "scripted"
    assert inst["currentMachineId"] is None
    listed = json.loads(ok(stack.cli("instances", "list", "--json")))
    assert inst["id"] in {i["id"] for i in listed}
    ok(stack.cli("env", "set", "--instance", inst["id"], "REGION", "eu-west"))
    var = json.loads(ok(stack.cli("--json", "env", "set", "MODE", "dev", "--instance", inst["id"])))
    assert var == {"name": "MODE", "value": "dev", "scope": "instance"}
    vars_ = json.loads(ok(stack.cli("--json", "env", "list", "--instance", inst["id"])))
    assert [(v["name"], v["value"]) for v in vars_] == [("MODE", "dev"), ("REGION", "eu-west")]
    table = ok(stack.cli("env", "list", "--instance", inst["id"]))
    assert table.splitlines()[0].split() == ["NAME", "SCOPE", "VALUE"]
    # fleet up's gateway records both sets in the audit account, with its own credential.
    audit = ("audit", "--instance", inst["id"], "--method", "env.set")
    eventually(lambda: len(json.loads(ok(stack.cli("--json", *audit)))) == 2)
    entries = json.loads(ok(stack.cli("--json", *audit)))
    assert [e["params"]["value"] for e in entries] == ["[redacted]", "[redacted]"]
    assert ok(stack.cli(*audit)).splitlines()[0].split()[:3] == ["TIME", "ACTOR", "METHOD"]


def test_instances_limits_set_one_keep_the_others_then_reset(stack: FleetUp) -> None:
    iid = json.loads(ok(stack.cli("--json", "instances", "create", "limited")))["id"]
    ok(stack.cli("instances", "limits", iid, "--memory-mb", "512", "--pids", "100"))
    got = json.loads(ok(stack.cli("--json", "instances", "limits", iid, "--cpus", "0.5")))
    assert (got["memoryMb"], got["cpus"], got["pids"]) == (512, 0.5, 100)
    assert sorted(got["own"]) == ["cpus", "memoryMb", "pids"]
    shown = ok(stack.cli("instances", "limits", iid, "--reset"))
    assert "its own: none" in shown


def test_instances_network_sets_a_policy_and_machines_egress_lists_its_refusals(
    stack: FleetUp,
) -> None:
    iid = json.loads(ok(stack.cli("--json", "instances", "create", "walled")))["id"]
    assert ok(stack.cli("instances", "network", iid)).splitlines() == ["default: allow"]
    created = stack.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stderr
    mid = json.loads(ok(stack.cli("--json", "machines", "list", "--instance", iid)))[0]["id"]
    shown = ok(stack.cli("instances", "network", iid, "--default", "deny", "--allow", "pypi.org",
                         "--allow", "*.example.org:443", "--deny", "10.0.0.0/8"))  # fmt: skip
    assert shown.splitlines() == [
        "default: deny", "allow pypi.org", "allow *.example.org:443", "deny 10.0.0.0/8",
        "applied to 1 of 1 running machine(s)",
    ]  # fmt: skip
    got = json.loads(ok(stack.cli("--json", "instances", "network", iid)))
    assert got["egress"] == {"default": "deny", "allow": ["pypi.org", "*.example.org:443"],
                             "deny": ["10.0.0.0/8"]}  # fmt: skip
    bad = stack.cli("instances", "network", iid, "--default", "deny", "--allow", "a.test:99999")
    assert bad.returncode == EXIT_API, bad
    assert "-32602" in bad.stderr, bad.stderr
    assert "'a.test:99999'" in bad.stderr, bad.stderr
    # A name the policy refuses (the platform's DNS answers NXDOMAIN, asking no one).
    code = "import socket; socket.gethostbyname('blocked.example.test')"
    assert stack.cli("machines", "exec", mid, "--", "python3", "-c", code).returncode != 0
    eventually(lambda: "blocked.example.test" in ok(stack.cli("machines", "egress", mid)))
    table = ok(stack.cli("machines", "egress", mid)).splitlines()
    assert table[0].split() == ["AT", "NAME", "DESTINATION", "PORT", "REASON", "DROPPED", "BEFORE"]
    # Other refusals of the machine's own (a connection the policy drops) may come before or
    # after the name's: --last counts from the newest, whichever that is.
    rows = [line.split()[1:] for line in table[1:]]
    assert ["blocked.example.test", "-", "-", "denied", "0"] in rows
    before = json.loads(ok(stack.cli("--json", "machines", "egress", mid)))
    [newest] = json.loads(ok(stack.cli("--json", "machines", "egress", mid, "--last", "1")))
    after = json.loads(ok(stack.cli("--json", "machines", "egress", mid)))
    assert after.index(newest) >= after.index(before[-1])
    assert newest["reason"] == "denied"
    assert ("blocked.example.test", "denied") in {(e["name"], e["reason"]) for e in before}
    assert ok(stack.cli("instances", "network", iid, "--reset")).startswith("default: allow")


def test_create_wait_prints_each_stage_in_order(ready: Ready) -> None:
    out = ok(ready.created)
    assert out.splitlines()[0] == f"machine {ready.machine_id} (instance {ready.instance_id})"
    stages = [line.split()[2] for line in out.splitlines()[1:]]
    assert stages == STAGES
    seconds = [float(line.split()[1].rstrip("s")) for line in out.splitlines()[1:]]
    assert seconds == sorted(seconds)


def test_machines_list_table_shows_the_machine_ready(stack: FleetUp, ready: Ready) -> None:
    lines = ok(stack.cli("machines", "list", "--instance", ready.instance_id)).splitlines()
    header = lines[0].split()
    assert header == ["ID", "INSTANCE", "PROVIDER", "RUNTIME", "HOST", "STATUS", "DAEMON", "AGE",
                      "REASON"]  # fmt: skip
    row = lines[1]
    host = socket.gethostname()  # `fleet up`'s one host: FLEET_HOST_ID's default
    assert row.split()[:6] == [ready.machine_id, ready.instance_id, "local", "namespaces", host,
                               "ready"]  # fmt: skip
    assert row.index("ready") == lines[0].index("STATUS")  # aligned columns
    assert row.endswith("all readiness checks passed")
    detail = ok(stack.cli("machines", "get", ready.machine_id))
    assert "status    ready: all readiness checks passed" in detail
    assert f"host      {host}" in detail
    assert "runtime   namespaces" in detail


def test_a_bad_id_says_what_an_id_looks_like_before_and_at_the_api(stack: FleetUp) -> None:
    got = stack.cli("machines", "get", "m-nope")
    assert got.returncode == EXIT_USAGE
    assert got.stderr.strip() == (
        "fleet: m-nope is not a machine id (they look like m-0123456789abcdef)"
    )
    env = {**os.environ, "FLEET_URL": stack.url, "FLEET_TOKEN": stack.token}
    api = subprocess.run(
        [sys.executable, "-c", "import asyncio, sys; from fleet.client.client import FleetClient\n"
         "async def main():\n"
         "    async with FleetClient(sys.argv[1], sys.argv[2]) as c:\n"
         "        await c.get_machine('m-nope')\n"
         "asyncio.run(main())", stack.url, stack.token],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "`$.machineId` is not a machine id (they look like m-0123456789abcdef)" in api.stderr


def test_a_second_instance_of_a_name_is_noted_and_names_work_when_unique(stack: FleetUp) -> None:
    name = f"twice-{secrets.token_hex(4)}"
    first = ok(stack.cli("instances", "create", name)).strip()
    assert json.loads(ok(stack.cli("--json", "instances", "get", name)))["id"] == first
    made = stack.cli("instances", "create", name)
    second = ok(made).strip()
    assert made.stderr.strip() == (
        f"fleet: note: instance {second} shares its name {name!r} with {first}: give its id "
        "where a name would be ambiguous"
    )
    both = stack.cli("instances", "get", name)
    assert both.returncode == EXIT_USAGE
    assert both.stderr.startswith(f"fleet: 2 instances are named {name!r} (")
    assert {first, second} == set(both.stderr.split("(")[1].split(")")[0].split(", "))
    assert ok(stack.cli("instances", "get", second)).startswith(f"{second}  {name}")


def test_exec_prints_output_and_passes_the_exit_code_on(stack: FleetUp, ready: Ready) -> None:
    hello = stack.cli("machines", "exec", ready.machine_id, "--cwd", ".fleet", "--", "ls", ".env")
    assert (hello.returncode, hello.stdout) == (0, ".env\n")
    failing = stack.cli(
        "machines",
        "exec",
        ready.machine_id,
        "--",
        "sh",
        "-c",
        "echo partial; echo oops >&2; exit 7",
    )
    assert (failing.returncode, failing.stdout, failing.stderr) == (7, "partial\n", "oops\n")
    as_json = json.loads(
        stack.cli("--json", "machines", "exec", ready.machine_id, "--", "true").stdout
    )
    assert as_json["exitCode"] == 0
    no_command = stack.cli("machines", "exec", ready.machine_id)
    assert no_command.returncode == 2
    assert "needs a command after --" in no_command.stderr


def test_refresh_env_reports_how_many_machines_it_wrote(stack: FleetUp, ready: Ready) -> None:
    ok(stack.cli("env", "set", "--instance", ready.instance_id, "GREETING", "refreshed"))
    text = ok(stack.cli("machines", "refresh-env", "--instance", ready.instance_id))
    assert text.strip() == "written to 1 of 1 running machine(s)"
    result = json.loads(
        ok(stack.cli("--json", "machines", "refresh-env", "--instance", ready.instance_id))
    )
    assert result == {"machines": 1, "written": 1, "failed": []}
    env = ok(stack.cli("machines", "exec", ready.machine_id, "--", "cat", ".fleet/.env"))
    assert "GREETING='refreshed'" in env


def test_processes_start_list_logs_kill(stack: FleetUp, ready: Ready) -> None:
    m = ready.machine_id
    script = "echo serving on 8000; exec sleep 300"
    started = ok(stack.cli("processes", "start", m, "--tag", "web", "--", "sh", "-c", script))
    assert started.startswith("started pid ")
    (proc,) = json.loads(ok(stack.cli("--json", "processes", "list", m)))
    assert (proc["tag"], proc["state"], proc["command"]) == ("web", "running", ["sh", "-c", script])
    table = ok(stack.cli("processes", "list", m)).splitlines()
    assert table[0].split()[:3] == ["PID", "TAG", "STATE"]
    assert table[1].split()[:3] == [str(proc["pid"]), "web", "running"]

    def logged() -> bool:
        return ok(stack.cli("processes", "logs", m, "--tag", "web")) == "serving on 8000\n"

    eventually(logged)
    killed = json.loads(ok(stack.cli("--json", "processes", "kill", m, "--tag", "web")))
    assert killed["pid"] == proc["pid"]
    assert killed["state"] != "running"
    states = {
        p["pid"]: p["state"] for p in json.loads(ok(stack.cli("--json", "processes", "list", m)))
    }
    assert states.get(proc["pid"], "gone") != "running"
    neither = stack.cli("processes", "kill", m)
    assert neither.returncode == 2  # argparse: one of --pid/--tag is required


def test_cron_set_from_job_flags_then_list(stack: FleetUp, ready: Ready) -> None:
    jobs = ("--job", "tick|*/5 * * * *|date -u", "--job", "backup|0 3 * * *|tar czf b.tgz src")
    text = ok(stack.cli("cron", "set", "--instance", ready.instance_id, *jobs))
    assert text.strip() == "2 job(s) saved, pushed to 1 of 1 machine(s)"
    listed = json.loads(ok(stack.cli("--json", "cron", "list", "--instance", ready.instance_id)))
    assert [(j["name"], j["schedule"], j["command"]) for j in listed] == [
        ("tick", "*/5 * * * *", ["date", "-u"]),
        ("backup", "0 3 * * *", ["tar", "czf", "b.tgz", "src"]),
    ]
    bad = stack.cli("cron", "set", "--instance", ready.instance_id, "--job", "no schedule")
    assert bad.returncode == 2
    assert "NAME|SCHEDULE|COMMAND" in bad.stderr


def test_events_no_follow_lists_the_pipeline_in_order(stack: FleetUp, ready: Ready) -> None:
    out = ok(stack.cli("events", "--no-follow", "--machine", ready.machine_id))
    lines = out.splitlines()
    assert [line.split()[3] for line in lines][:5] == STAGES
    assert all(line.split()[2] == ready.machine_id for line in lines)
    seqs = [int(line.split()[0]) for line in lines]
    assert seqs == sorted(seqs)
    only = stack.cli("--json", "events", "--no-follow", "--machine", ready.machine_id,
                     "--kind", "ready", "--kind", "created")  # fmt: skip
    assert [json.loads(line)["type"] for line in ok(only).splitlines()] == ["created", "ready"]
    # Nothing after the last one: the command ends on the gateway's `caught-up` (that it ends
    # there, not on the client's idle fallback, is tests/unit/test_client_transport.py's; no
    # wall-clock bound here: a loaded host starts a CLI slowly).
    t0 = time.monotonic()
    # This machine's only: the stack is shared with other tests, whose events go on.
    after = stack.cli("events", "--no-follow", "--machine", ready.machine_id,
                      "--since", str(seqs[-1]), timeout=60)  # fmt: skip
    print(f"fleet events --no-follow --since <last>: {time.monotonic() - t0:.2f} s")
    assert ok(after) == ""


def test_create_wait_on_a_terminal_redraws_the_stages(stack: FleetUp) -> None:
    iid = ok(stack.cli("instances", "create", "on-a-tty")).strip()
    code, out = run_on_a_tty(stack, "machines", "create", "--instance", iid, "--wait")
    assert code == 0, out
    assert "\x1b[5F" in out  # drawn again in place, five stage lines up
    final = out.rsplit("\x1b[J", 1)[1].splitlines()
    assert [line.split()[0] for line in final] == ["✓"] * 5
    assert [line.split()[2] for line in final] == STAGES


def test_connection_refused_names_the_url_and_how_to_start(stack: FleetUp) -> None:
    with PortHold() as refusing:  # bound, never listening: a connection to it is refused
        url = f"http://127.0.0.1:{refusing.port}"
        env = {**os.environ, "FLEET_URL": url, "FLEET_TOKEN": stack.token}
        refused = subprocess.run([FLEET, "machines", "list"], env=env, capture_output=True,
                                 text=True, timeout=30, check=False)  # fmt: skip
        streamed = subprocess.run([FLEET, "events", "--no-follow"], env=env,
                                  capture_output=True, text=True, timeout=30,
                                  check=False)  # fmt: skip
    assert refused.returncode == EXIT_UNREACHABLE == 3
    assert f"cannot reach fleetd at {url}" in refused.stderr
    assert "start fleetd with `./run up`" in refused.stderr
    assert streamed.returncode == 3
    assert url in streamed.stderr


def test_a_wrong_token_is_refused_with_the_api_error_code(stack: FleetUp) -> None:
    for args in (("instances", "list"), ("events", "--no-follow")):
        refused = stack.cli("--token", "fleet_not-a-real-token", *args)
        assert refused.returncode == EXIT_API == 4
        assert "error 1001" in refused.stderr
        assert "refused the access token" in refused.stderr
        assert refused.stdout == ""


def run_on_a_tty(stack: FleetUp, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with its stdout on a pseudo-terminal; its exit code and all it wrote."""
    leader, follower = pty.openpty()
    env = {**os.environ, "FLEET_URL": stack.url, "FLEET_TOKEN": stack.token, "COLUMNS": "200"}
    proc = subprocess.Popen([FLEET, *args], env=env, stdout=follower, stderr=subprocess.STDOUT)
    os.close(follower)
    sel = selectors.DefaultSelector()
    sel.register(leader, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while sel.select(timeout=max(0.0, deadline - time.monotonic())):
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed, the CLI has exited
                break
            if not chunk:
                break
            seen += chunk
        return proc.wait(timeout=10), seen.decode()
    finally:
        sel.close()
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_archive_lets_the_daemon_report_stopping_first(stack: FleetUp) -> None:
    """The daemon is asked to stop before its access is revoked: its `stopping` report comes
    before `archived`, and no daemon is SIGKILLed (stack.stop() checks the provider's exit
    records: a daemon that ignored the stop would be killed after the grace). How quick an
    archive is belongs to the benchmarks, not to a timed assertion here."""
    iid = json.loads(ok(stack.cli("--json", "instances", "create", "archive-me")))["id"]
    ok(stack.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60"))
    mid = json.loads(ok(stack.cli("machines", "list", "--instance", iid, "--json")))[0]["id"]
    ok(stack.cli("machines", "archive", mid))
    out = ok(stack.cli("--json", "events", "--no-follow", "--machine", mid))
    seen = [(e["type"], e.get("status")) for e in map(json.loads, out.splitlines())]
    assert seen.index(("daemon-status-reported", "stopping")) < seen.index(("archived", None))


def test_create_with_an_idempotency_key_twice_is_one_machine(stack: FleetUp) -> None:
    """A script that runs `machines create` again after losing its output (or its connection)
    passes the same key and gets the same machine, not a second one nor a Conflict."""
    iid = json.loads(ok(stack.cli("--json", "instances", "create", "keyed")))["id"]
    key = ["--idempotency-key", "cli-create-0001"]
    first = json.loads(ok(stack.cli("--json", "machines", "create", "--instance", iid, *key)))
    again = json.loads(ok(stack.cli("--json", "machines", "create", "--instance", iid, *key)))
    assert again["id"] == first["id"]
    listed = json.loads(ok(stack.cli("machines", "list", "--instance", iid, "--json")))
    assert [m["id"] for m in listed] == [first["id"]]
    bad = stack.cli("machines", "create", "--instance", iid, "--idempotency-key", "x")
    assert bad.returncode != 0
    assert "idempotencyKey" in bad.stderr + bad.stdout


def test_rebuild_with_an_idempotency_key_twice_is_one_rebuild(stack: FleetUp) -> None:
    """`machines rebuild` run again with its key (a script that lost its output) answers the
    machine the first run made: it neither archives that machine nor makes a third."""
    iid = json.loads(ok(stack.cli("--json", "instances", "create", "keyed-rebuild")))["id"]
    old = json.loads(ok(stack.cli("--json", "machines", "create", "--instance", iid)))
    key = ["--idempotency-key", "cli-rebuild-0001"]
    first = json.loads(ok(stack.cli("--json", "machines", "rebuild", "--instance", iid, *key)))
    again = json.loads(ok(stack.cli("--json", "machines", "rebuild", "--instance", iid, *key)))
    assert again["id"] == first["id"] != old["id"]
    listed = json.loads(ok(stack.cli("machines", "list", "--instance", iid, "--json")))
    assert {m["id"]: m["status"] for m in listed}[old["id"]] in ("archiving", "archived")
    assert sorted(m["id"] for m in listed) == sorted([old["id"], first["id"]])
    assert {m["id"]: m["status"] for m in listed}[first["id"]] not in ("archiving", "archived")


def test_fleet_call_calls_any_method_checked_against_its_spec(stack: FleetUp, ready: Ready) -> None:
    """`fleet call` reaches a method no hand-written command has, with params from JSON and
    -p pairs; bad params are named before anything is sent, an API error as every command's."""
    got = stack.cli("call", "machines.get", "-p", f"machineId={ready.machine_id}")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["id"] == ready.machine_id
    ran = stack.cli("call", "machines.exec", json.dumps({"machineId": ready.machine_id}),
                    "-p", 'command=["echo", "hi"]', "-p", "timeoutS=30")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["stdout"] == "hi\n"
    bad = stack.cli("call", "machines.get", "-p", "machineId=m-nope")
    assert bad.returncode == EXIT_USAGE
    assert "machine id (they look like m-0123456789abcdef)" in bad.stderr
    typo = stack.cli("call", "machines.gte")
    assert (typo.returncode, "did you mean machines.get" in typo.stderr) == (EXIT_USAGE, True)
    gone = stack.cli("call", "machines.get", "-p", "machineId=m-00000000000000ff")
    assert gone.returncode == EXIT_API
    assert gone.stderr.startswith("fleet: error 1004: "), gone.stderr
