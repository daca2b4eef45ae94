"""A daemon client whose machines live in memory.

``FakeDaemons`` is a ``DaemonClient``: ``machine(id)`` gives the real ``MachineClient`` and
``call`` is the only thing replaced. Each call is encoded as the real client encodes it and
answered by a ``FakeMachine`` through ``contracts.rpc.jsonrpc.Dispatcher`` over ``DAEMON_METHODS``,
so params are validated and errors come back as the same ``contracts.errors`` classes; a machine
that is not booted (or is set ``unavailable``/``timeout``) raises ``DaemonUnavailable`` /
``DaemonTimeout`` as the real client does.

A ``FakeMachine`` keeps the files written (with their modes) and every command run; commands
are answered by the rules a test adds (``on_exec``), else by a few built-ins: ``test -f``,
``git clone`` (records a checkout), and about recorded checkouts ``git -C P rev-parse``,
``config --get remote.origin.url``, ``status``, ``fetch`` and ``checkout``; anything else
exits 127.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import msgspec

from contracts.daemon import files as df, rpc as d, sessions as ss, watch as dw
from contracts.errors import (
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    FileNotFound,
    InvalidParams,
    NotFound,
    NotSupported,
    WrongFileKind,
)
from contracts.ports import LIST_PORTS, TUNNEL_CONNECT, ListeningPort, PortList
from contracts.rpc.jsonrpc import (
    Dispatcher,
    MethodSpec,
    NoParams,
    P,
    R,
    Router,
    decode_result,
    encode_call,
)
from controlplane.calls.daemon_client import EXEC_MARGIN_S, DaemonClient
from tests.fakes.code_kernels import FakeKernels
from tests.fakes.desktop import FakeDesktop
from tests.fakes.watches import FakeWatches

Mode = Literal["up", "unavailable", "timeout"]
ExecAnswer = Callable[[d.ExecCommandParams], d.ExecCommandResult]


@dataclass(frozen=True)
class FakeFile:
    content: str
    mode: int
    mtime: float = 0.0


@dataclass
class Checkout:
    url: str
    branch: str
    #: Uncommitted changes in the work tree (``git status --porcelain`` lists something).
    dirty: bool = False
    #: False while a clone is still fetching or checking out (or was cut off): a repository
    #: of the url with no index yet (and no HEAD, as the fake's git answers).
    finished: bool = True
    #: When the clone began: its .git/config's mtime.
    began: float = field(default_factory=time.time)


@dataclass
class ExecRule:
    #: A contiguous run of argv words (or a predicate on argv) that selects the command.
    match: Sequence[str] | Callable[[list[str]], bool]
    answer: ExecAnswer
    #: How many more times it answers (None: always).
    times: int | None = None

    def matches(self, argv: list[str]) -> bool:
        if self.times == 0:
            return False
        if callable(self.match):
            return self.match(argv)
        words = list(self.match)
        n = len(words)
        return any(argv[i : i + n] == words for i in range(len(argv) - n + 1))


@dataclass(frozen=True)
class Call:
    """One RPC the platform made: which machine, which method, its params, its timeout."""

    machine_id: str
    method: str
    params: object
    timeout_s: float | None


def result(exit_code: int = 0, stdout: str = "", stderr: str = "", *,
           timed_out: bool = False) -> d.ExecCommandResult:  # fmt: skip
    return d.ExecCommandResult(exit_code=exit_code, stdout=stdout, stderr=stderr,
                               timed_out=timed_out)  # fmt: skip


@dataclass
class FakeMachine:
    machine_id: str
    version: str = "0.1.0"
    git_sha: str | None = "0" * 40
    mode: Mode = "up"
    #: The next this many daemon.health calls answer ok=false.
    unhealthy_for: int = 0
    #: A daemon from before daemon.health took files: it answers -32602 to them.
    health_without_files: bool = False
    files: dict[str, FakeFile] = field(default_factory=dict)
    checkouts: dict[str, Checkout] = field(default_factory=dict)
    #: Every command run (argv, cwd, env, timeout), oldest first.
    commands: list[d.ExecCommandParams] = field(default_factory=list)
    #: The clones ``tool.gitClone`` made (a machine whose image has no git).
    git_clones: list[d.GitCloneParams] = field(default_factory=list)
    rules: list[ExecRule] = field(default_factory=list)
    processes: dict[int, d.ProcessInfo] = field(default_factory=dict)
    process_logs: dict[int, list[str]] = field(default_factory=dict)
    #: Interactive sessions, kept as their info (nothing runs: nothing to attach to).
    sessions: dict[str, ss.SessionInfo] = field(default_factory=dict)
    #: The daemon's own log lines (daemon.log answers the last of them).
    daemon_log: list[str] = field(default_factory=list)
    #: Code the provider put on the machine (refs a selfUpdate may switch to).
    installed_code: set[str] = field(default_factory=set)
    #: What tool.listPorts answers.
    ports: list[ListeningPort] = field(default_factory=list)
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    #: The code interpreter (machines.code.*): calls recorded, no kernel.
    code: FakeKernels = field(init=False)
    #: The desktop (machines.desktop.*): its state and actions recorded, no display.
    desktop: FakeDesktop = field(default_factory=FakeDesktop)
    #: tool.watch: streams a test writes to (tests/fakes/watches.py).
    watches: FakeWatches = field(init=False)

    def __post_init__(self) -> None:
        self.code = FakeKernels(str(self.home))
        self.watches = FakeWatches(self.machine_id, str(self.home))

    @property
    def home(self) -> PurePosixPath:
        return PurePosixPath("/fake/machines") / self.machine_id / "home"

    def path(self, path: str) -> str:
        """Where ``path`` lands on the machine, resolved as the daemon resolves it."""
        if path == "~" or path.startswith("~/"):
            return str(self.home / path[2:])
        if path.startswith("~"):
            raise InvalidParams(f"{path!r}: ~user paths are not supported", field="$.path")
        p = PurePosixPath(path)
        return str(p if p.is_absolute() else self.home / p)

    def file(self, path: str) -> FakeFile:
        return self.files[self.path(path)]

    def on_exec(self, match: Sequence[str] | Callable[[list[str]], bool], *,
                exit_code: int = 0, stdout: str = "", stderr: str = "", timed_out: bool = False,
                answer: ExecAnswer | None = None, times: int | None = None) -> None:  # fmt: skip
        """Answer commands that match (a run of argv words, or a predicate) this way, ahead of
        the built-ins and of earlier rules."""
        fixed = result(exit_code, stdout, stderr, timed_out=timed_out)
        self.rules.insert(0, ExecRule(match, answer or (lambda _: fixed), times))

    def ran(self, *words: str) -> list[list[str]]:
        """The argvs run that contain ``words`` as a contiguous run."""
        rule = ExecRule(words, lambda p: result())
        return [c.command for c in self.commands if rule.matches(c.command)]

    # --- the daemon's methods --------------------------------------------------------------
    def router(self) -> Router[None]:
        r = Router[None]()
        r.register(d.WRITE_FILE, self.write_file)
        r.register(d.EXEC_COMMAND, self.exec_command)
        r.register(d.GIT_CLONE, self.git_clone)
        r.register(d.GET_VERSION, self.get_version)
        r.register(d.HEALTH, self.health)
        r.register(d.PROCESS_START, self.process_start)
        r.register(d.PROCESS_LIST, self.process_list)
        r.register(d.PROCESS_KILL, self.process_kill)
        r.register(d.PROCESS_LOGS, self.process_logs_)
        r.register(d.SELF_UPDATE, self.self_update)
        r.register(d.STOP, self.stop)
        r.register(d.EXEC_STREAM, self.exec_command)  # nothing to stream to in memory
        r.register(d.EXEC_KILL, self.exec_kill)
        r.register(d.DAEMON_LOG, self.daemon_log_)
        r.register(d.SESSION_OPEN, self.session_open)
        r.register(d.SESSION_LIST, self.session_list)
        r.register(d.SESSION_RESIZE, self.session_resize)
        r.register(d.SESSION_CLOSE, self.session_close)
        r.register(d.SESSION_SIGNAL, self.session_signal)
        r.register(d.SESSION_WRITE, self.session_write)
        r.register(d.SESSION_ATTACH, self.no_stream)
        r.register(d.EXEC_PIPE, self.no_stream)
        r.register(LIST_PORTS, self.list_ports)
        r.register(TUNNEL_CONNECT, self.no_stream)
        r.register(df.READ_FILE, self.read_file)
        r.register(df.LIST_DIR, self.list_dir)
        r.register(df.STAT, self.stat)
        r.register(df.REMOVE_FILE, self.remove_file)
        r.register(df.MAKE_DIR, self.make_dir)
        r.register(df.MOVE, self.move)
        r.register(df.DOWNLOAD_FILE, self.no_stream)
        r.register(df.UPLOAD_FILE, self.no_stream)
        r.register(dw.WATCH, self.watches.watch)
        self.code.register(r)
        self.desktop.register(r)
        return r

    async def no_stream(self, _: object, __: None) -> Any:  # any stream-opening answer
        """Byte streams need a real daemon on a real NATS (tests/integration)."""
        raise NotSupported("an in-memory machine has no byte streams")

    async def session_open(self, p: ss.SessionOpenParams, _: None) -> ss.SessionInfo:
        sid = f"{next(self._pids):016x}"
        argv = p.command or ["/bin/sh", "-l"]
        info = ss.SessionInfo(
            session_id=sid, name=p.name or argv[0], command=argv, cwd=self.path(p.cwd or "~"),
            cols=p.cols, rows=p.rows, pid=next(self._pids), started_at=time.time(), running=True,
        )  # fmt: skip
        self.sessions[sid] = info
        return info

    async def session_list(self, _: NoParams, __: None) -> ss.SessionList:
        return ss.SessionList(sessions=list(self.sessions.values()))

    async def session_resize(self, p: ss.SessionResizeParams, _: None) -> ss.SessionInfo:
        if p.session_id not in self.sessions:
            raise NotFound(f"no session {p.session_id} on this machine")
        info = msgspec.structs.replace(self.sessions[p.session_id], cols=p.cols, rows=p.rows)
        self.sessions[p.session_id] = info
        return info

    async def session_signal(self, p: ss.SessionSignalParams, _: None) -> ss.SessionSignaled:
        """An in-memory session never exits by itself: a SIGKILL ends it."""
        info = self.sessions.get(p.session_id)
        if info is None:
            raise NotFound(f"no session {p.session_id} on this machine")
        if p.signal == 9 and info.running:
            self.sessions[p.session_id] = msgspec.structs.replace(info, running=False,
                                                                  exit_code=137)  # fmt: skip
        return ss.SessionSignaled(signaled=info.running)

    async def session_write(self, p: ss.SessionWriteParams, _: None) -> ss.SessionWritten:
        info = self.sessions.get(p.session_id)
        if info is None:
            raise NotFound(f"no session {p.session_id} on this machine")
        return ss.SessionWritten(written=len(p.data) if info.running else 0)

    async def session_close(self, p: ss.SessionRef, _: None) -> ss.SessionClosed:
        return ss.SessionClosed(closed=self.sessions.pop(p.session_id, None) is not None)

    async def list_ports(self, _: NoParams, __: None) -> PortList:
        return PortList(ports=list(self.ports))

    # Files: the written ones (text), in a flat table; directories are the prefixes of their
    # paths. The daemon's confinement and its other kinds of files are tested against it.
    async def read_file(self, p: df.ReadFileParams, _: None) -> df.ReadFileResult:
        target = self.path(p.path)
        f = self.files.get(target)
        if f is None:
            raise FileNotFound(f"{target}: no such file")
        raw = f.content.encode()
        content = base64.b64encode(raw).decode() if p.encoding == "base64" else f.content
        return df.ReadFileResult(path=target, content=content, encoding=p.encoding,
                                 size=len(raw), mode=f.mode)  # fmt: skip

    async def list_dir(self, p: df.ListDirParams, _: None) -> df.ListDirResult:
        base = self.path(p.path).rstrip("/") + "/"
        inside = [k[len(base) :].split("/") for k in self.files if k.startswith(base)]
        if not inside:
            raise FileNotFound(f"{base}: no such directory")
        # Each path down to ``depth`` levels, as the daemon orders them (by their components);
        # an empty directory's marker (its path and "/") names nothing of its own.
        names = sorted({tuple(parts[:n]) for parts in inside for n in range(1, p.depth + 1)
                        if len(parts) >= n and parts[n - 1]})  # fmt: skip
        entries = [msgspec.structs.replace(self._entry(base + "/".join(n)), name="/".join(n))
                   for n in names[: p.limit]]  # fmt: skip
        return df.ListDirResult(path=base.rstrip("/"), entries=entries,
                                truncated=len(names) > p.limit)  # fmt: skip

    def _entry(self, path: str) -> df.DirEntry:
        name = path.rsplit("/", 1)[1]
        f = self._file(path)
        if f is not None:
            return df.DirEntry(name=name, kind="file", size=len(f.content.encode()), mode=f.mode,
                               mtime=f.mtime)  # fmt: skip
        if any(k.startswith(path + "/") for k in self.files):
            return df.DirEntry(name=name, kind="dir", size=0, mode=0o755, mtime=0.0)
        raise FileNotFound(f"{path}: no such file or directory")

    def _file(self, path: str) -> FakeFile | None:
        """A written file, or one of a checkout's that the setup pusher looks at: its
        .git/config, and its .git/index once it is finished."""
        if (f := self.files.get(path)) is not None:
            return f
        for dest, c in self.checkouts.items():
            if path == f"{dest}/.git/config" or (c.finished and path == f"{dest}/.git/index"):
                return FakeFile("", 0o644, c.began)
        return None

    async def stat(self, p: df.StatParams, _: None) -> df.StatResult:
        target = self.path(p.path)
        e = self._entry(target)
        return df.StatResult(path=target, name=e.name, kind=e.kind, size=e.size, mode=e.mode,
                             mtime=e.mtime)  # fmt: skip

    async def remove_file(self, p: df.RemoveFileParams, _: None) -> df.RemoveFileResult:
        target = self.path(p.path)
        inside = [k for k in self.files if k.startswith(target + "/")]
        if inside and not p.recursive:
            raise WrongFileKind(f"{target} is a directory that is not empty: remove it with "
                                "recursive", data={"kind": "dir"})  # fmt: skip
        gone = [k for k in [target, *inside] if self.files.pop(k, None) is not None]
        return df.RemoveFileResult(path=target, removed=bool(gone))

    async def make_dir(self, p: df.MakeDirParams, _: None) -> df.MakeDirResult:
        target = self.path(p.path)
        if target in self.files:
            raise WrongFileKind(f"{target} exists and is not a directory (file)",
                                data={"kind": "file"})  # fmt: skip
        created = not any(k.startswith(target + "/") for k in self.files)
        if created:  # an empty directory: a key that only marks it
            self.files[target + "/"] = FakeFile("", 0o755)
        return df.MakeDirResult(path=target, entry=self._entry(target), created=created)

    async def move(self, p: df.MoveParams, _: None) -> df.MoveResult:
        src, dst = self.path(p.source), self.path(p.destination)
        if dst.startswith(src + "/"):
            raise InvalidParams(f"{dst!r} is inside {src!r}: a directory cannot be moved into "
                                "itself", field="$.destination")  # fmt: skip
        moved = {k: f for k, f in self.files.items() if k == src or k.startswith(src + "/")}
        if not moved:
            raise FileNotFound(f"{src}: no such file or directory")
        for k, f in moved.items():
            del self.files[k]
            self.files[dst + k[len(src) :]] = f
        return df.MoveResult(path=dst, entry=self._entry(dst))

    async def stop(self, _: NoParams, __: None) -> d.StopResult:
        self.mode = "unavailable"  # a stopped daemon serves nothing more
        return d.StopResult(stopping=True)

    async def exec_kill(self, p: d.ExecKillParams, _: None) -> d.ExecKillResult:
        return d.ExecKillResult(killed=False)  # an in-memory command has always ended

    async def daemon_log_(self, p: d.DaemonLogParams, _: None) -> d.DaemonLogResult:
        return d.DaemonLogResult(lines=self.daemon_log[-p.lines :])

    async def write_file(self, p: d.WriteFileParams, _: None) -> d.WriteFileResult:
        target = self.path(p.path)
        self.files[target] = FakeFile(p.content, p.mode)
        return d.WriteFileResult(path=target, bytes_written=len(p.content.encode()))

    async def exec_command(self, p: d.ExecCommandParams, _: None) -> d.ExecCommandResult:
        self.commands.append(p)
        for rule in self.rules:
            if rule.matches(p.command):
                if rule.times is not None:
                    rule.times -= 1
                return rule.answer(p)
        return self._builtin(p)

    async def git_clone(self, p: d.GitCloneParams, _: None) -> d.ExecCommandResult:
        """The daemon runtime's clone (an image with no git): recorded as a checkout, as a
        real ``git clone`` would be; one already there is left as it is."""
        self.git_clones.append(p)
        dest = self.path(p.path)
        if p.check_only:
            there = self.checkouts.get(dest)
            if there is None or there.url != p.url:
                return result(1, "\n")
            if not there.finished:
                return result(d.EXIT_CLONE_UNFINISHED, "\n")
            return result(0, there.branch + "\n")
        if dest not in self.checkouts:
            self.checkouts[dest] = Checkout(url=p.url, branch=p.branch)
            self.files[f"{dest}/.git/HEAD"] = FakeFile(f"ref: refs/heads/{p.branch}\n", 0o644)
        return result(0, f"cloned {p.url} (branch {p.branch}) into {p.path}\n")

    async def get_version(self, p: NoParams, _: None) -> d.GetVersionResult:
        return d.GetVersionResult(version=self.version, git_sha=self.git_sha)

    async def health(self, p: d.HealthParams, _: None) -> d.HealthResult:
        if p.files and self.health_without_files:
            raise InvalidParams("Object contains unknown field `files`", field="$.files")
        if self.unhealthy_for > 0:
            self.unhealthy_for -= 1
            return d.HealthResult(ok=False, uptime_s=1.0)
        missing = [f for f in p.files if self._file(self.path(f)) is None]
        return d.HealthResult(ok=True, uptime_s=1.0, missing=missing)

    async def process_start(self, p: d.ProcessStartParams, _: None) -> d.ProcessInfo:
        if p.tag is not None and any(
            i.tag == p.tag and i.state == "running" for i in self.processes.values()
        ):
            raise Conflict(f"a running process is tagged {p.tag!r}")
        pid = next(self._pids)
        info = d.ProcessInfo(pid=pid, tag=p.tag, command=p.command,
                             cwd=self.path(p.cwd or "~"), restart=p.restart, state="running",
                             started_at=time.time(), log_path=f".fleet/logs/{pid}.log")  # fmt: skip
        self.processes[pid] = info
        self.process_logs[pid] = []
        return info

    async def process_list(self, p: NoParams, _: None) -> d.ProcessList:
        return d.ProcessList(processes=list(self.processes.values()))

    def _find(self, ref: d.ProcessRef) -> d.ProcessInfo:
        for info in self.processes.values():
            if info.pid == ref.pid or (ref.tag is not None and info.tag == ref.tag):
                return info
        raise NotFound(f"no process {ref.pid or ref.tag}")

    async def process_kill(self, p: d.ProcessRef, _: None) -> d.ProcessInfo:
        info = self._find(p)
        info.state, info.exit_code = "exited", -15
        return info

    async def process_logs_(self, p: d.ProcessLogsParams, _: None) -> d.ProcessLogs:
        info = self._find(p)
        return d.ProcessLogs(pid=info.pid, tag=info.tag,
                             lines=self.process_logs[info.pid][-p.tail :])  # fmt: skip

    async def self_update(self, p: d.SelfUpdateParams, _: None) -> d.SelfUpdateResult:
        if p.target_ref not in self.installed_code:
            raise NotFound(f"no code installed for {p.target_ref}")
        before, self.git_sha = self.git_sha, p.target_ref
        return d.SelfUpdateResult(restarting=True, from_git_sha=before, to_git_sha=p.target_ref)

    # --- built-in commands -------------------------------------------------------------------
    def _builtin(self, p: d.ExecCommandParams) -> d.ExecCommandResult:
        argv = p.command
        if argv[:2] == ["test", "-f"] and len(argv) == 3:
            return result(0 if self.path(argv[2]) in self.files else 1)
        if argv[0] == "git":
            return self._git(argv[1:], self.path(p.cwd or "~"))
        return result(127, stderr=f"{argv[0]}: command not found")

    def _git(self, args: list[str], cwd: str) -> d.ExecCommandResult:
        while args and args[0] in ("-C", "-c"):
            if args[0] == "-C":
                cwd = str(PurePosixPath(cwd) / args[1])
            args = args[2:]
        sub, rest = (args[0], args[1:]) if args else ("", [])
        if sub == "clone":
            dest = str(PurePosixPath(cwd) / rest[-1])
            if dest in self.checkouts:
                return result(128, stderr=f"fatal: destination path '{rest[-1]}' already exists")
            branch = rest[rest.index("--branch") + 1] if "--branch" in rest else "main"
            self.checkouts[dest] = Checkout(url=rest[-2], branch=branch)
            return result(0, stderr=f"Cloning into '{rest[-1]}'...\n")
        checkout = self.checkouts.get(cwd)
        if checkout is None:
            return result(128, stderr="fatal: not a git repository")
        if sub == "rev-parse" and rest[:1] == ["--abbrev-ref"]:
            return result(0, checkout.branch + "\n")
        if sub == "rev-parse" and rest[:2] == ["--verify", "-q"]:
            return result(1)  # no local branch but the one checked out
        if sub == "rev-parse" and "HEAD" in rest and not checkout.finished:
            return result(1, ".git\n")  # git's answer while a clone has not written HEAD
        if sub == "rev-parse":
            return result(0, ".git\n" + ("f" * 40 + "\n" if "HEAD" in rest else ""))
        if sub == "status":
            return result(0, " M README\n" if checkout.dirty else "")
        if sub == "fetch":
            return result(0)
        if sub == "checkout":
            checkout.branch = rest[1] if rest[0] == "-b" else rest[0]
            return result(0)
        if sub == "config" and rest == ["--get", "remote.origin.url"]:
            return result(0, checkout.url + "\n")
        if sub == "config" and rest[:1] == ["--get-all"]:
            return result(0, "+refs/heads/main:refs/remotes/origin/main\n")
        if sub == "config" and rest[:1] == ["--add"]:
            return result(0)
        return result(1, stderr=f"fake git: {sub} is not modelled")


class FakeDaemons(DaemonClient):
    """``DaemonClient`` whose machines are ``FakeMachine``s (no NATS, no signing keys)."""

    def __init__(self) -> None:  # the real one's connection, keys and metrics are not used
        self.machines: dict[str, FakeMachine] = {}
        #: Every call made, oldest first.
        self.calls: list[Call] = []
        self._fake_ids = itertools.count(1)
        #: Called after a machine answered ``daemon.stop`` (the fast tests' world reports it).
        self.on_stop: Callable[[FakeMachine], Awaitable[None]] | None = None

    def boot(self, machine_id: str, **kw: object) -> FakeMachine:
        """The machine's daemon is up (idempotent: a booted machine is returned as it is)."""
        if machine_id not in self.machines:
            self.machines[machine_id] = FakeMachine(machine_id, **kw)  # type: ignore[arg-type]
        return self.machines[machine_id]

    def __getitem__(self, machine_id: str) -> FakeMachine:
        return self.machines[machine_id]

    async def call(self, machine_id: str, spec: MethodSpec[P, R], params: P, *,
                   timeout_s: float | None = None) -> R:  # fmt: skip
        self.calls.append(Call(machine_id, spec.name, params, timeout_s))
        machine = self.machines.get(machine_id)
        if machine is None or machine.mode == "unavailable":
            raise DaemonUnavailable(
                f"no daemon is serving machine {machine_id} (not running or not connected)"
            )
        if machine.mode == "timeout":
            raise DaemonTimeout(
                f"machine {machine_id} did not answer {spec.name} within {timeout_s or 10.0:g}s"
            )
        body = encode_call(spec, params, next(self._fake_ids))
        answer = await Dispatcher(d.DAEMON_METHODS, machine.router()).handle(body, None)
        assert answer is not None
        if spec.name == d.STOP.name and self.on_stop is not None:
            await self.on_stop(machine)  # its ``stopping`` report, as a real daemon sends it
        return decode_result(spec, answer)

    async def call_batch(self, machine_id: str, spec: MethodSpec[P, R], calls: list[P]) -> list[R]:
        """As the real daemon answers a batch: every call runs, in order; the client raises
        the first error."""
        results: list[R] = []
        failed: list[Exception] = []
        for params in calls:
            try:
                results.append(await self.call(machine_id, spec, params))
            except Exception as exc:  # noqa: BLE001 - kept: the batch's answer holds it
                failed.append(exc)
        if failed:
            raise failed[0]
        return results

    def calls_of(self, method: str, machine_id: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and machine_id in (None, c.machine_id)]


__all__ = ["EXEC_MARGIN_S", "Call", "FakeDaemons", "FakeFile", "FakeMachine", "result"]
