"""The TypeScript SDK (sdk/typescript) against `fleet up`: its own tests (node's test runner)
run with FLEET_URL and FLEET_TOKEN of a stack started here, its README's and its docs page's
examples compile under ``tsc --strict``, and its packed tarball, installed offline into an
empty directory, runs the README's quick start. ``./run test`` installs the SDK's node_modules
(``js_tools`` in ./run); the tests fail, saying so, where they are missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SDK, FleetUp, start_fleet_up
from tests.e2e.test_chaos_ha import _children
from tests.e2e.test_up_killed import ready_machine

ROOT = Path(__file__).resolve().parents[2]
TSC = SDK / "node_modules" / "typescript" / "bin" / "tsc"
#: Where the examples are, each ```ts block one module.
DOCS = (SDK / "README.md", ROOT / "docs" / "typescript.md")
#: One stack for the module's tests, on one worker (one of them restarts its gateway).
pytestmark = pytest.mark.xdist_group("typescript_sdk")
#: docs/code-interpreter.md's TypeScript example, run against the stack.
CODE_EXAMPLE = re.compile(r"<!-- example:ts -->\n```ts\n(.*?)```", re.S)
QUICK = re.compile(r"<!-- example:quick -->\n```ts\n(.*?)```\n<!-- /example:quick -->", re.S)


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(proc: subprocess.CompletedProcess[str], what: str) -> str:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def share() -> Iterator[Path]:
    """A directory the machines may read, holding the quick start's repo (as the README's).
    Not under pytest's temp dirs: their parents are the test user's alone (0700), and a
    machine runs as a user of its own, which must reach the path."""
    root = Path(tempfile.mkdtemp(prefix="fleet-ts-share-"))
    root.chmod(0o755)
    try:
        _make_repo(root / "hello")
        yield root
    finally:
        shutil.rmtree(root)


def _make_repo(repo: Path) -> None:
    repo.mkdir()
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.com"]
    _ok(_run([*git, "init", "-q", "-b", "main"], cwd=repo), "git init")
    (repo / "README").write_text("hello from fleetd\n")
    _ok(_run([*git, "add", "README"], cwd=repo), "git add")
    _ok(_run([*git, "commit", "-q", "-m", "init"], cwd=repo), "git commit")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, share: Path) -> Iterator[FleetUp]:
    data = tmp_path_factory.mktemp("fleet") / "data"
    # The webhooks test's endpoint is on this host's loopback (sdk/typescript/test/webhooks).
    up = start_fleet_up(data, env={"FLEET_SANDBOX_SHARE": str(share),
                                   "FLEET_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1/32"})  # fmt: skip
    yield up
    up.stop()


def _node_env(up: FleetUp, **extra: str) -> dict[str, str]:
    return {**os.environ, "FLEET_URL": up.url, "FLEET_TOKEN": up.token, **extra}


def _node_tests(up: FleetUp, folder: str, **extra: str) -> None:
    files = sorted(str(p.relative_to(SDK)) for p in (SDK / folder).glob("*.test.mjs"))
    assert files, f"no tests in sdk/typescript/{folder}"
    argv = ["node", "--test", "--test-concurrency=1", "--test-reporter=spec", *files]
    proc = _run(argv, cwd=SDK, env=_node_env(up, **extra), timeout=1200)
    _ok(proc, f"node --test {' '.join(files)}")


@pytest.mark.timeout(1200)
def test_the_sdk_against_a_live_stack(built: Path, stack: FleetUp) -> None:
    """Each call of the SDK; an aborted execStream leaves no process; 1 MiB checksummed both
    ways; a terminal's echo; typed errors for a missing and a stopped machine; the typed
    method table is the OpenRPC document's."""
    _node_tests(stack, "test")


@pytest.mark.timeout(600)
def test_events_resume_across_a_gateway_restart(built: Path, stack: FleetUp) -> None:
    """The node test kills the gateway (SIGKILL) after the first event; `fleet up` starts a
    new one; the iterator resumes from the last event id: no duplicate, no gap."""
    gateways = [pid for pid, argv in _children(stack.proc.pid) if "-m services.gateway" in argv]
    assert len(gateways) == 1, f"gateways under fleet up: {gateways}"
    _node_tests(stack, "test/restart", FLEET_GATEWAY_PID=str(gateways[0]))


def _examples() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        blocks = re.findall(r"```ts\n(.*?)```", doc.read_text(), re.S)
        assert blocks, f"{doc} has no ```ts example"
        out += [(f"{doc.stem}_{i}", block) for i, block in enumerate(blocks)]
    return out


def test_the_examples_compile_under_strict(built: Path, tmp_path: Path) -> None:
    """Every ```ts block of the README and of docs/typescript.md, each a module of its own,
    compiles with ``tsc --noEmit --strict`` against the built package's types."""
    for name, code in _examples():
        (tmp_path / f"{name}.mts").write_text(code)
    (tmp_path / "tsconfig.json").write_text(
        '{"compilerOptions": {"strict": true, "noEmit": true, "target": "ES2022",'
        ' "module": "NodeNext", "moduleResolution": "NodeNext", "skipLibCheck": true,'
        f' "types": ["node"], "typeRoots": ["{SDK}/node_modules/@types"],'
        f' "paths": {{"@fleetd/sdk": ["{built}/esm/index.d.ts"]}}}},'
        ' "include": ["*.mts"]}'
    )
    _ok(_run(["node", str(TSC), "-p", str(tmp_path)], cwd=tmp_path), "tsc --strict")


@pytest.mark.timeout(600)
def test_the_packed_tarball_installs_offline_and_runs_the_quick_start(
    built: Path, stack: FleetUp, share: Path, tmp_path: Path
) -> None:
    pack = _ok(_run(["npm", "pack", "--pack-destination", str(tmp_path)], cwd=SDK), "npm pack")
    tarball = tmp_path / pack.strip().splitlines()[-1]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "package/node_modules/ws/package.json" in names, "ws is bundled"
    assert {"package/dist/cjs/index.js", "package/dist/esm/index.d.ts", "package/LICENSE"} <= names
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}\n')
    install = ["npm", "install", "--offline", "--no-audit", "--no-fund", str(tarball)]
    _ok(_run(install, cwd=app), "npm install of the tarball")
    assert not (app / "node_modules" / "typescript").exists()
    # The CommonJS build, required, against the stack.
    cjs = (
        "const { Fleet, METHOD_NAMES } = require('@fleetd/sdk');"
        "new Fleet().call('rpc.discover', {}).then((doc) => {"
        " if (doc.methods.length !== METHOD_NAMES.length) process.exit(3);"
        " console.log('cjs', doc.methods.length); });"
    )
    cjs_out = _ok(_run(["node", "-e", cjs], cwd=app, env=_node_env(stack)), "require()")
    assert cjs_out.startswith("cjs "), cjs_out
    (match,) = QUICK.findall((SDK / "README.md").read_text())
    (app / "quick.mts").write_text(match)
    # Compiled by the SDK's tsc (the app has none), against the installed package's types.
    types = str(SDK / "node_modules" / "@types")
    tsc = [str(TSC), "--strict", "--module", "NodeNext", "--target", "ES2022", "--skipLibCheck",
           "--typeRoots", types, "--types", "node", "quick.mts"]  # fmt: skip
    _ok(_run(["node", *tsc], cwd=app), "tsc of the quick start")
    env = _node_env(stack, REPO_URL=str(share / "hello"))
    out = _ok(_run(["node", "quick.mjs"], cwd=app, env=env, timeout=600), "the quick start")
    assert re.search(r"^m-[0-9a-f]{16} ready$", out, re.M), out
    assert "DATABASE_URL='postgres://db/app'" in out
    assert "HTTP_TIMEOUT='30'" in out
    assert re.search(r"^0 [0-9a-f]{7,} init$", out, re.M), out
    assert "remember the milk" in out


def _page_block(name: str, lang: str) -> str:
    """docs/typescript.md's block marked ``<!-- example:NAME -->``, as written."""
    marked = re.compile(rf"<!-- example:{name} -->\n```{lang}\n(.*?)```", re.S)
    (block,) = marked.findall((ROOT / "docs" / "typescript.md").read_text())
    return str(block)


@pytest.mark.timeout(900)
def test_the_pages_install_and_run_commands_work_as_written(
    stack: FleetUp, share: Path, tmp_path: Path
) -> None:
    """docs/typescript.md's commands, each block run by sh as written: the pack command at the
    root of a copy of the repository's SDK (its sources, no node_modules or dist: as a fresh
    clone has it), the install in an empty project, then its quick start saved as quick.ts
    and run with the page's tsx command against the stack."""
    fleetd = tmp_path / "fleetd"
    ignore = shutil.ignore_patterns("node_modules", "dist", "*.tgz", "test")
    shutil.copytree(SDK, fleetd / "sdk" / "typescript", ignore=ignore)
    sh = ["sh", "-ec"]
    env = _node_env(stack, FLEETD=str(fleetd), REPO_URL=str(share / "hello"))
    _ok(_run([*sh, _page_block("pack", "sh")], cwd=fleetd, env=env, timeout=600), "the pack")
    app = tmp_path / "app"
    app.mkdir()
    _ok(_run([*sh, _page_block("install", "sh")], cwd=app, env=env), "the install")
    (app / "quick.ts").write_text(_page_block("quick", "ts"))
    out = _ok(_run([*sh, _page_block("run", "sh")], cwd=app, env=env, timeout=600), "the run")
    assert re.search(r"^m-[0-9a-f]{16} ready$", out, re.M), out
    assert not (app / "node_modules" / "typescript").exists()


@pytest.mark.timeout(600)
def test_the_code_interpreter_pages_example_runs_as_written(
    built: Path, stack: FleetUp, tmp_path: Path
) -> None:
    """docs/code-interpreter.md's TypeScript example, compiled under ``tsc --strict`` against
    the built SDK and run by node on a machine of the stack: its callbacks print the streamed
    parts as they came, its iterator each part, then the answers."""
    (block,) = CODE_EXAMPLE.findall((ROOT / "docs" / "code-interpreter.md").read_text())
    (tmp_path / "example.mts").write_text(block)
    scope = tmp_path / "node_modules" / "@fleetd"
    scope.mkdir(parents=True)
    (scope / "sdk").symlink_to(SDK)  # as installed: its package.json's exports, its dist
    types = str(SDK / "node_modules" / "@types")
    tsc = [str(TSC), "--strict", "--module", "NodeNext", "--target", "ES2022", "--skipLibCheck",
           "--typeRoots", types, "--types", "node", "example.mts"]  # fmt: skip
    _ok(_run(["node", *tsc], cwd=tmp_path), "tsc of the example")
    env = _node_env(stack, MACHINE_ID=ready_machine(stack))
    out = _ok(_run(["node", "example.mjs"], cwd=tmp_path, env=env, timeout=300), "the example")
    lines = out.splitlines()
    assert lines[:2] == ["stdout: thinking", "result: 42"], out
    assert re.fullmatch(r"answer: \d+ 1", lines[2]), out
    assert lines[3:] == ['0 stdout "out\\n"', '1 error "ZeroDivisionError"',
                         "error: ZeroDivisionError"], out  # fmt: skip
