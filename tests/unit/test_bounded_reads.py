"""Every read the platform's host-side code makes of a child's output is bounded as it is read
(base/bounded_output.py), or named here with the reason it need not be: the source of
``providers/``, ``services/``, ``controlplane/`` and ``base/`` is scanned for the ways a
child's output is read whole (``capture_output``, a ``PIPE`` for stdout or stderr,
``check_output``, ``communicate()``, a Docker exec's ``read_out()``, a container's whole log).

A machine's output is the machine's to make as large as it likes, and the host's processes
are outside its memory limit. An entry here is a tool of the platform's own, run on the
platform's input, whose output its input bounds; or a read that bounds itself (``uses``: a
name the function must use for it).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

from base.version import SOURCE_ROOT

SCANNED = ("providers", "services", "controlplane", "base")
_SPAWNERS = {"run", "Popen", "create_subprocess_exec", "create_subprocess_shell"}
_WHOLE = {"check_output", "getoutput", "getstatusoutput"}


class Allowed(NamedTuple):
    why: str
    uses: str | None = None  # a name the function must use: what bounds its read


#: (file, function): why its read need not be bounded by base/bounded_output.py.
ALLOWED = {
    ("base/bounded_output.py", "run_capped_sync"): Allowed(
        "the bounded reader itself", "_pump_sync"),
    ("base/version.py", "git_sha"): Allowed(
        "git rev-parse of the platform's own source: one line"),
    ("providers/local/homes.py", "fs_type"): Allowed(
        "stat -f -c %t prints one hex number"),
    ("providers/local/homes.py", "_run"): Allowed(
        "mkfs.btrfs, mount, btrfs subvolume on paths the platform names: a line of their own"),
    ("providers/local/homes.py", "unmount"): Allowed(
        "umount of the platform's image: a line of its own"),
    ("providers/egress/nftables.py", "nft"): Allowed(
        "nft's messages on the platform's own script (its size the policy's)"),
    ("controlplane/policy/code_status.py", "CodeVersions._is_ancestor"): Allowed(
        "git merge-base in the platform's code repository: a line"),
    ("providers/sandbox/image.py", "overlay"): Allowed(
        "mount of an overlay the platform names: a line"),
    ("providers/sandbox/bwrap.py", "probe"): Allowed(
        "bwrap running `true`: a line"),
    ("controlplane/policy/runtimes.py", "runsc_version"): Allowed(
        "runsc --version: a few lines"),
    ("providers/docker/image.py", "_lib_dir"): Allowed(
        "pip wheel of the platform's pinned dependencies"),
    ("providers/docker/image.py", "_run"): Allowed(
        "debootstrap and tar of the platform's base image, from its configured mirror"),
    ("base/platform_code.py", "git"): Allowed(
        "git in the platform's code repository"),
    ("providers/docker/copy.py", "_exec"): Allowed(
        "a copy's tools over a machine's volume: each stream kept in a CappedSink", "CappedSink"),
    ("controlplane/host_addresses.py", "host_addresses"): Allowed(
        "ip -j addr of the host's own interfaces"),
    ("services/codemode/sandbox.py", "Sandbox.__aenter__"): Allowed(
        "a run's output: read a line at a time under the pipes' limit, kept to MAX_LOG_BYTES "
        "(services/codemode/engine.py _pump_logs, _log)", "limit"),
    ("services/codemode/sandbox_gvisor.py", "GvisorSandbox._start"): Allowed(
        "as Sandbox.__aenter__: a line at a time under the limit, kept to MAX_LOG_BYTES",
        "limit"),
}  # fmt: skip


class Read(NamedTuple):
    file: str
    function: str
    line: int
    how: str


def _is_pipe(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "PIPE"


def _how(call: ast.Call) -> str | None:
    """How ``call`` reads a child's output whole, if it does."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    if name in _WHOLE:
        return name
    if name in ("communicate", "read_out"):
        return f"{name}()"
    if name == "log" and ({"stdout", "stderr"} & kw.keys()) and "tail" not in kw:
        return "a container's whole log"
    receiver = func.value if isinstance(func, ast.Attribute) else None
    spawns = name in _SPAWNERS and (name != "run" or (
        isinstance(receiver, ast.Name) and receiver.id == "subprocess"))  # fmt: skip
    capture = kw.get("capture_output")
    if spawns and isinstance(capture, ast.Constant) and capture.value is True:
        return f"{name}(capture_output=True)"
    if spawns and (_is_pipe(kw.get("stdout")) or _is_pipe(kw.get("stderr"))):
        return f"{name}(stdout or stderr a PIPE)"
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, file: str) -> None:
        self.file = file
        self.scope: list[str] = []
        self.found: list[Read] = []
        self.names: dict[str, set[str]] = {}

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        if not isinstance(node, ast.ClassDef):
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            used |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            used |= {k.arg for n in ast.walk(node) if isinstance(n, ast.Call)
                     for k in n.keywords if k.arg}  # fmt: skip
            self.names[".".join(self.scope)] = used
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _function

    def visit_Call(self, node: ast.Call) -> None:
        if (how := _how(node)) is not None:
            self.found.append(Read(self.file, ".".join(self.scope), node.lineno, how))
        self.generic_visit(node)


def scan() -> tuple[list[Read], dict[tuple[str, str], set[str]]]:
    reads: list[Read] = []
    names: dict[tuple[str, str], set[str]] = {}
    for top in SCANNED:
        for path in sorted((SOURCE_ROOT / top).rglob("*.py")):
            file = path.relative_to(SOURCE_ROOT).as_posix()
            scanner = _Scanner(file)
            scanner.visit(ast.parse(path.read_text(), file))
            reads += scanner.found
            names |= {(file, fn): used for fn, used in scanner.names.items()}
    return reads, names


def test_every_read_of_a_childs_output_is_bounded_or_named_with_its_reason() -> None:
    reads, _ = scan()
    unbounded = [r for r in reads if (r.file, r.function) not in ALLOWED]
    assert not unbounded, "read whole, not bounded as read (base/bounded_output.py):\n" + "\n".join(
        f"  {r.file}:{r.line} {r.function}: {r.how}" for r in unbounded
    )


def test_each_named_read_is_still_there_and_uses_what_bounds_it() -> None:
    reads, names = scan()
    seen = {(r.file, r.function) for r in reads}
    assert not ALLOWED.keys() - seen, f"named, but no longer read: {ALLOWED.keys() - seen}"
    for where, allowed in ALLOWED.items():
        assert allowed.uses is None or allowed.uses in names[where], (where, allowed.uses)


def test_the_scan_finds_each_way_of_reading_whole() -> None:
    source = """
import asyncio, subprocess
def a(): subprocess.run(["x"], capture_output=True)
def b(): subprocess.run(["x"], stdout=subprocess.PIPE)
async def c(): await asyncio.create_subprocess_exec("x", stderr=asyncio.subprocess.PIPE)
async def d(p): await p.communicate()
def e(): subprocess.check_output(["x"])
async def f(s): await s.read_out()
async def g(c): await c.log(stdout=True)
def fine(runsc): runsc.run("x"); subprocess.run(["x"]); subprocess.run(["x"], capture_output=False)
async def fine_log(c): await c.log(stderr=True, tail="50")
"""
    scanner = _Scanner("example.py")
    scanner.visit(ast.parse(source))
    assert [r.function for r in scanner.found] == ["a", "b", "c", "d", "e", "f", "g"]


def test_the_scanned_trees_are_there() -> None:
    assert all(Path(SOURCE_ROOT / top).is_dir() for top in SCANNED)
