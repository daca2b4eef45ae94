"""A hostile machine against its own daemon's code and token: from inside the machine, as its
user, it rewrites everything under its ``~/.fleet`` (a code directory and a ``current`` link
of its own, the state file, the lock), plants a ``.pth`` file in its user site-packages, and
links ``~/.fleet/code`` to a directory of the host. Its daemon must never run its code nor show
it the token, root must write nothing through its link, and the platform's own code refresh
must still work. Both providers."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import msgspec
import pytest

from base.codestore import CODE_MOUNT
from contracts.bus import subjects
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_isolation import TOKEN_PROBE, sh
from tests.integration.test_refresh import code_repo
from tests.waiters import subscribed, wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

#: The machine's own "daemon": says it ran, with its environment and descriptors.
EVIL_MAIN = """import os, pathlib
pathlib.Path(os.environ['HOME'], 'evil-ran').write_text(repr(dict(os.environ)))
"""
#: Run inside the machine: everything under ~/.fleet rewritten; the code store tried. (A lock
#: naming a live process of its own would only stop its own daemon, which it can always do.)
REWRITE = f"""set -u
cd "$HOME/.fleet"
mkdir -p code/evil/daemon
cat > code/evil/daemon/__main__.py <<'EOF'
{EVIL_MAIN}
EOF
echo eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee > code/evil/.fleet-git-sha
ln -sfn evil code/current
echo '{{"pid": 1, "state": "running", "successorPid": 1}}' > daemon.state.json
rm -f daemon.lock && echo 999999 0 > daemon.lock
for v in 3.9 3.10 3.11 3.12 3.13 3.14; do
  mkdir -p "$HOME/.local/lib/python$v/site-packages"
  echo "import os; open(os.path.expanduser('~/evil-ran'), 'w').write('pth')" \
    > "$HOME/.local/lib/python$v/site-packages/evil.pth"
done
touch {CODE_MOUNT}/x 2>/dev/null && echo WROTE-STORE
touch {CODE_MOUNT}/current 2>/dev/null && echo WROTE-CURRENT
echo done
"""
#: Run inside the machine: every file it can read under these roots, searched for the token.
FILE_PROBE = """
import hashlib, os, re, sys
for root in sys.argv[2:]:
    for parent, _, files in os.walk(root):
        for name in files:
            try:
                with open(os.path.join(parent, name), 'rb') as f:
                    blob = f.read(1 << 20)
            except OSError:
                continue
            for m in re.finditer(rb'(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])', blob):
                if hashlib.sha256(m.group()).hexdigest() == sys.argv[1]:
                    print('LEAK in', os.path.join(parent, name))
print('done')
"""


@pytest.fixture
def stack_settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FLEET_HEARTBEAT_S", "0.2")  # a beat is when a daemon looked at ~/.fleet
    return msgspec.structs.replace(settings, code_repo=str(code_repo(tmp_path)[0]), git_sha="")


async def ready(stack: FleetClient, provider: str) -> str:
    inst = await stack.create_instance(f"hostile-{provider}")
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


async def token_digest(store: Store, settings: Settings, mid: str) -> str:
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    return hashlib.sha256(SecretBox(settings.secret_key).decrypt(sealed).encode()).hexdigest()


async def beats(bus: Bus, mid: str, n: int = 5) -> None:
    async with subscribed(bus.nc, subjects.heartbeat(mid)) as inbox:
        for _ in range(n):
            await inbox.next(timeout=10)


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_machine_that_rewrites_its_fleet_dir_gets_neither_code_run_nor_the_token(
    stack: FleetClient, stack_settings: Settings, store: Store, bus: Bus, provider: str
) -> None:
    mid = await ready(stack, provider)
    python = "python3" if provider == "docker" else sys.executable
    out = await sh(stack, mid, REWRITE)
    assert out.rstrip().endswith("done"), out
    assert "WROTE" not in out, out  # the code store is read-only to the machine

    await beats(bus, mid)  # the daemon has looked at its ~/.fleet five times
    await stack.restart_machine(mid)  # a new daemon, from the supervisor
    await beats(bus, mid)
    refreshed = await stack.refresh_code(mid)  # the platform's code still goes in
    assert refreshed.restarting
    sha = refreshed.to_git_sha

    async def runs_it() -> bool:
        m = await stack.get_machine(mid)
        return m.daemon_git_sha == sha and m.status is MachineStatus.READY

    await wait_until(runs_it, timeout=30, every=0.2)
    await stack.restart_machine(mid)  # and the supervisor's next daemon runs it too
    await beats(bus, mid)
    await wait_until(runs_it, timeout=30, every=0.2)
    ran = await sh(stack, mid, "cat ~/evil-ran 2>/dev/null; echo done")
    assert ran.strip() == "done", ran  # the machine's own code never ran as its daemon

    digest = await token_digest(store, stack_settings, mid)
    probe = f"cat > /tmp/probe.py <<'EOF'\n{TOKEN_PROBE}\nEOF\n{python} -I /tmp/probe.py {digest}"
    found = await sh(stack, mid, probe, timeout_s=60)
    assert found.rstrip().endswith("done"), found[-2000:]
    assert "LEAK" not in found, found[-2000:]  # in no /proc/*/environ, cmdline, mem, fd
    files = f"cat > /tmp/files.py <<'EOF'\n{FILE_PROBE}\nEOF\n"
    files += f'{python} -I /tmp/files.py {digest} "$HOME" /tmp /run'
    found = await sh(stack, mid, files, timeout_s=60)
    assert found.rstrip().endswith("done"), found[-2000:]
    assert "LEAK" not in found, found[-2000:]  # in no file it can read


async def test_refresh_code_writes_nothing_through_a_link_the_machine_made(
    stack: FleetClient, stack_settings: Settings, tmp_path: Path
) -> None:
    """``~/.fleet/code`` linked to a directory of the host: the install goes to the
    platform's store, and nothing appears in the host's directory."""
    canary = tmp_path / "canary"
    canary.mkdir(mode=0o755)
    (canary / "keep").write_text("root's\n")
    mid = await ready(stack, "local")
    out = await sh(stack, mid, f"rm -rf ~/.fleet/code; ln -s {canary} ~/.fleet/code; echo done")
    assert out.rstrip().endswith("done"), out
    refreshed = await stack.refresh_code(mid)
    assert refreshed.restarting
    assert sorted(p.name for p in canary.iterdir()) == ["keep"]
    assert (canary / "keep").read_text() == "root's\n"
    assert canary.stat().st_uid == 0
