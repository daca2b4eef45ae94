"""``sudo`` inside a gvisor machine, without a set-user-ID bit (this runsc ignores them:
google/gvisor#212). The machine's supervisor, root of gVisor's kernel, runs a *broker* on a Unix
socket that only the sandbox sees (``SOCKET``, on a tmpfs of gVisor's own); the ``sudo``
program on the machine's PATH (a small script of the platform's, mounted read-only) sends it
the command, the target user, its working directory and environment, with its stdin, stdout
and stderr as descriptors (SCM_RIGHTS), forwards the signals it gets, and exits with the
command's status. Root is gVisor's alone: the host never sees it (docs/runtimes.md).

Any process of the machine may ask (the passwordless ``sudo`` of the peers' images): the machine
is its user's. Standard library only: the supervisor imports this.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import socket
import struct
import subprocess
import sys
import threading

from base.tokenfd import SUDO_SOCKET as SOCKET, SUDO_SOCKET_VAR as SOCKET_VAR

#: sudo's ``secure_path``, with the platform's own directory first (``sudo sudo`` works).
SECURE_PATH = "/run/fleet-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Kept through sudo's environment reset, as its default ``env_keep`` does.
KEPT = ("TERM", "DISPLAY", "COLORS", "COLORTERM", "LANG", "LANGUAGE", "TZ", "XAUTHORITY")
MAX_REQUEST = 256 * 1024  # bytes of one request
MAX_ARGS = 4096
#: The largest uid or gid a ``#N`` may name (2**32 - 2: -1 means "unchanged" to the kernel).
MAX_ID = 2**32 - 2
#: Commands run through the broker at once, and how long a request may take to arrive.
MAX_SESSIONS = 64
_REQUEST_S = 30.0
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_USAGE = "usage: sudo [-EHnisk] [-u user] [-g group] [--] command [arg ...]"


class Refused(ValueError):
    """A request the broker will not run: its reason is told to the caller."""


# The client: the ``sudo`` program.


def parse(args: list[str]) -> dict[str, object]:
    """sudo's command line: the request (Refused for a bad one). ``-n`` never matters: no
    password is ever asked."""
    req: dict[str, object] = {"user": "root", "group": None, "keepEnv": False,
                              "login": False, "shell": False}  # fmt: skip
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if arg.startswith("--"):
            raise Refused(f"sudo: unknown option {arg}\n{_USAGE}")
        flags = arg[1:]
        for n, flag in enumerate(flags):
            if flag in "ug":
                value = flags[n + 1 :] or (args[i] if i < len(args) else "")
                if not value:
                    raise Refused(f"sudo: option -{flag} requires an argument\n{_USAGE}")
                if not flags[n + 1 :]:
                    i += 1
                req["user" if flag == "u" else "group"] = value
                break
            key = {"E": "keepEnv", "i": "login", "s": "shell"}.get(flag)
            if key:
                req[key] = True
            elif flag not in "nHkKSPv":
                raise Refused(f"sudo: invalid option -- '{flag}'\n{_USAGE}")
    req["argv"] = args[i:]
    if not req["argv"] and not (req["login"] or req["shell"]):
        raise Refused(_USAGE)
    return req


def main(args: list[str]) -> int:
    if args in (["-v"], ["-k"], ["-K"], ["-nv"]):
        return 0  # nothing is cached: there is no password
    if args and args[0] in ("-l", "-nl"):
        print("User may run the following commands on this machine:\n    (ALL : ALL) NOPASSWD: ALL")
        return 0
    try:
        req = parse(args)
    except Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    req |= {"cwd": os.getcwd(), "env": dict(os.environ)}
    data = json.dumps(req).encode()
    if len(data) > MAX_REQUEST:
        print("sudo: the command and its environment are too long", file=sys.stderr)
        return 1
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(os.environ.get(SOCKET_VAR) or SOCKET)
    except OSError as exc:
        print(f"sudo: this machine gives no root ({exc.strerror})", file=sys.stderr)
        return 1
    with conn:
        socket.send_fds(conn, [struct.pack("!I", len(data)) + data], [0, 1, 2])
        for sig in _FORWARDED:
            signal.signal(sig, lambda s, _: _send_signal(conn, s))
        return _await_status(conn)


def _send_signal(conn: socket.socket, sig: int) -> None:
    with contextlib.suppress(OSError):
        conn.send(bytes([sig]))


def _await_status(conn: socket.socket) -> int:
    """The broker's answer: ``exit N`` or ``refused REASON``, one line."""
    data = b""
    while b"\n" not in data and len(data) < 4096:
        try:
            chunk = conn.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    word, _, rest = data.decode(errors="replace").partition(" ")
    if word == "exit" and rest.strip().lstrip("-").isdigit():
        return int(rest)
    print(rest.strip() or "sudo: the broker ended without an answer", file=sys.stderr)
    return 1


# The broker: the supervisor's, root of gVisor's kernel.


def start_broker(path: str) -> int:
    """A process of the supervisor's (forked before any thread or daemon exists) serving
    ``path``; its pid. Its children are its own to wait for: the supervisor reaps only what
    it orphans."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 - every user of the machine may ask
    listener.listen(16)
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    try:  # the child: the supervisor's signal handlers are not ours
        for sig in (*_FORWARDED, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        serve(listener)
    finally:
        os._exit(0)


def serve(listener: socket.socket) -> None:
    slots = threading.BoundedSemaphore(MAX_SESSIONS)
    while True:
        try:
            conn, _ = listener.accept()
        except InterruptedError:
            continue
        if not slots.acquire(blocking=False):
            with conn, contextlib.suppress(OSError):
                conn.sendall(f"refused sudo: {MAX_SESSIONS} commands run already\n".encode())
            continue
        threading.Thread(target=_session, args=(conn, slots), daemon=True).start()


def _session(conn: socket.socket, slots: threading.BoundedSemaphore) -> None:
    try:
        _run_session(conn)
    finally:
        slots.release()


def _run_session(conn: socket.socket) -> None:
    fds: list[int] = []
    with conn:
        try:
            conn.settimeout(_REQUEST_S)  # a caller that never sends holds no slot for long
            req, fds = _receive(conn)
            conn.settimeout(None)
            _, uid, gid = struct.unpack(
                "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            )
            req["caller"] = [uid, gid]
            proc = _spawn(req, fds)
        except Refused as exc:
            with contextlib.suppress(OSError):
                conn.sendall(f"refused sudo: {exc}\n".encode())
            return
        except Exception as exc:  # noqa: BLE001 - the session's boundary: a caller's malformed
            # request ends its session with one short line, never a traceback on the
            # supervisor's stderr (the machine's log on the host's disk, unbounded)
            with contextlib.suppress(OSError):
                conn.sendall(f"refused sudo: a malformed request ({type(exc).__name__})\n".encode())
            return
        finally:
            for fd in fds:
                os.close(fd)
        threading.Thread(target=_relay_signals, args=(conn, proc), daemon=True).start()
        code = proc.wait()
        with contextlib.suppress(OSError):
            conn.sendall(f"exit {code if code >= 0 else 128 - code}\n".encode())


def _receive(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    """One request (a length, then JSON) and its three descriptors."""
    head, fds, _, _ = socket.recv_fds(conn, 4 + MAX_REQUEST, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise Refused("stdin, stdout and stderr are needed")
    data = head[4:]
    try:
        if len(head) < 4:
            raise Refused("the request was cut short")
        (size,) = struct.unpack("!I", head[:4])
        if size > MAX_REQUEST:
            raise Refused("the request is too long")
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise Refused("the request was cut short")
            data += chunk
        req = json.loads(data)
        if not isinstance(req, dict):
            raise Refused("the request is not an object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return req, fds


def _spawn(req: dict[str, object], fds: list[int]) -> subprocess.Popen[bytes]:
    argv, user, env, cwd = _command(req)
    try:
        return subprocess.Popen(
            argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], cwd=cwd, env=env,
            user=user.pw_uid, group=_group(req, user),
            extra_groups=os.getgrouplist(user.pw_name, user.pw_gid) if user.pw_uid else [],
            close_fds=True, restore_signals=True,
        )  # fmt: skip
    except FileNotFoundError:
        raise Refused(f"{argv[0]}: command not found") from None
    except PermissionError:
        raise Refused(f"{argv[0]}: permission denied") from None


def _command(req: dict[str, object]) -> tuple[list[str], pwd.struct_passwd, dict[str, str], str]:
    """What to run: argv, as whom, with which environment, where."""
    argv, given, caller_cwd = req.get("argv"), req.get("env"), req.get("cwd")
    if (
        not isinstance(argv, list)
        or len(argv) > MAX_ARGS
        or not all(isinstance(a, str) and "\0" not in a for a in argv)
    ):
        raise Refused("argv must be a list of strings")
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "\0" not in k + v for k, v in given.items()
    ):
        raise Refused("env must be an object of strings")
    user = _user(str(req.get("user") or "root"))
    shell = user.pw_shell or "/bin/sh"
    caller = req.get("caller")
    uid, gid = caller if isinstance(caller, list) and len(caller) == 2 else (-1, -1)
    env = _environment(given, user, keep=req.get("keepEnv") is True)
    env |= {"SUDO_USER": _name(int(uid)), "SUDO_UID": str(uid), "SUDO_GID": str(gid)}
    cwd = caller_cwd if isinstance(caller_cwd, str) else "/"
    if req.get("login") is True:
        env = {k: v for k, v in env.items() if k in (*KEPT, "PATH", "HOME", "USER",
                                                    "LOGNAME", "SHELL", "SUDO_USER",
                                                    "SUDO_UID", "SUDO_GID")}  # fmt: skip
        cwd = user.pw_dir if os.path.isdir(user.pw_dir) else "/"
        argv = [shell, "-l", *(["-c", " ".join(argv)] if argv else [])]
    elif req.get("shell") is True:
        shell = given.get("SHELL") or shell
        argv = [shell, *(["-c", " ".join(argv)] if argv else [])]
    if not argv:
        raise Refused("no command")
    env["SUDO_COMMAND"] = " ".join(argv)[:4096]
    return argv, user, env, cwd if os.path.isdir(cwd) else "/"


def _user(name: str) -> pwd.struct_passwd:
    try:
        if name.startswith("#") and name[1:].isdigit():
            uid = _id(name[1:])
            try:
                return pwd.getpwuid(uid)
            except KeyError:
                return pwd.struct_passwd((str(uid), "x", uid, uid, "", "/", "/bin/sh"))
        return pwd.getpwnam(name)
    except KeyError:
        raise Refused(f"unknown user {name}") from None


def _group(req: dict[str, object], user: pwd.struct_passwd) -> int:
    name = req.get("group")
    if not isinstance(name, str):
        return user.pw_gid
    if name.startswith("#") and name[1:].isdigit():
        return _id(name[1:])
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise Refused(f"unknown group {name}") from None


def _id(digits: str) -> int:
    """A uid or gid given as ``#N``: one the kernel can hold (not -1's 2**32-1)."""
    if len(digits) > 10 or int(digits) > MAX_ID:
        raise Refused(f"#{digits[:12]} is not a user or group id")
    return int(digits)


def _environment(given: dict[str, str], user: pwd.struct_passwd, keep: bool) -> dict[str, str]:
    """sudo's reset (``env_reset``, ``secure_path``, HOME set), or the caller's all with -E."""
    env = (
        dict(given)
        if keep
        else {k: v for k, v in given.items() if k in KEPT or k.startswith("LC_")}
    )
    env |= {"PATH": SECURE_PATH, "HOME": user.pw_dir, "USER": user.pw_name,
            "LOGNAME": user.pw_name, "SHELL": user.pw_shell or "/bin/sh"}  # fmt: skip
    return env


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _relay_signals(conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
    """Each byte the caller sends is a signal for the command; its hanging up, a SIGHUP."""
    while True:
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if not data:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)
            return
        for sig in data:
            if sig in _FORWARDED:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
