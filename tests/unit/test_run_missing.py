"""``./run``'s install steps on a host that lacks what they check for: each tool hidden in turn
(a PATH without it), with an apt-get that installs it, one that fails, and a user who is not
root. Each step either installs the tool or prints one line naming what to install; none ends
the script in silence. The steps run from ``./run`` itself, sourced, against fake ``apt-get``,
``apt-config`` and ``id`` (the real install is CI's fresh-machine stage).
"""

from __future__ import annotations

import atexit
import functools
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "run"
RUNSC_VERSION = "runsc version 0.0~20240729.0"

FAKE_APT = """#!/bin/bash
# apt-get as the test wants it: update always works; install creates each package's command
# (FAKE_APT=ok) or refuses (FAKE_APT=fail).
[ "$1" = update ] && exit 0
[ "$FAKE_APT" = ok ] || { echo "E: Unable to locate package ${@: -1}" >&2; exit 100; }
for word in "$@"; do
  case "$word" in -*|install|bookworm-backports) continue ;; esac
  echo "$word" >> "$FAKE_ROOT/installed"
  cmd=$(sed -n "s/^$word=//p" "$FAKE_ROOT/packages")
  [ -n "$cmd" ] || continue
  if [ "$cmd" = runsc ]; then
    printf '#!/bin/sh\\necho "%s"\\n' "$RUNSC_LINE" > "$FAKE_ROOT/bin/runsc"
  else
    printf '#!/bin/sh\\nexit 0\\n' > "$FAKE_ROOT/bin/$cmd"
  fi
  chmod +x "$FAKE_ROOT/bin/$cmd"
done
"""

FAKE_APT_CONFIG = """#!/bin/sh
echo "list='$FAKE_ROOT/sources.list'"
echo "parts='$FAKE_ROOT/sources.list.d/'"
"""

FAKE_ID = """#!/bin/sh
echo "${FAKE_UID:-0}"
"""

#: A python3 without ensurepip until apt-get installs its pythonX.Y-venv.
FAKE_PYTHON = """#!/bin/bash
case "$*" in
  *ensurepip*) [ -f "$FAKE_ROOT/bin/.venv-module" ] || exit 1 ;;
esac
exec {real} "$@"
"""


@dataclass
class Host:
    root: Path
    #: This host's PATH with one program hidden (``_without``), after the fakes' directory.
    path: str

    def run(self, steps: str, *, apt: str = "ok", uid: int = 0) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.root / 'bin'}:{self.path}", "FAKE_ROOT": str(self.root),
               "FAKE_APT": apt, "FAKE_UID": str(uid), "RUNSC_LINE": RUNSC_VERSION,
               "HOME": str(self.root)}  # fmt: skip
        script = f"source {shlex.quote(str(RUN))}\n{steps}\n"
        return subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip

    def has(self, command: str) -> bool:
        return (self.root / "bin" / command).exists()

    def installed(self) -> list[str]:
        path = self.root / "installed"
        return path.read_text().split() if path.exists() else []


#: What the install steps run besides the programs they check for (and the fakes).
CORE = ("bash", "sh", "cat", "cut", "sed", "grep", "chmod", "mkdir", "printf", "sha256sum", "env",
        "python3", "runsc")  # fmt: skip


@functools.cache
def _without(hidden: str) -> str:
    """A PATH of one directory: links to the install steps' own tools and every program they
    check for but ``hidden`` (made once per program, for the session)."""
    path = Path(tempfile.mkdtemp(prefix="fleetd-run-path-"))
    atexit.register(shutil.rmtree, path, True)
    for name in {*CORE, *(c for c, _ in PAIRS)} - {hidden}:
        if found := shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"):
            (path / name).symlink_to(found)
    return str(path)


def _host(tmp_path: Path, hidden: str, packages: dict[str, str]) -> Host:
    """A host without ``hidden``, with the fakes first on its PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fakes = {"apt-get": FAKE_APT, "apt-config": FAKE_APT_CONFIG, "id": FAKE_ID}
    if hidden == "python3":
        fakes["python3"] = FAKE_PYTHON.format(real=shlex.quote(sys.executable))
    else:
        (bin_dir / ".venv-module").touch()
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "packages").write_text("".join(f"{p}={c}\n" for p, c in packages.items()))
    (tmp_path / "sources.list.d").mkdir()
    return Host(tmp_path, _without(hidden))


def _pairs() -> list[tuple[str, str]]:
    """Every (command, package) pair ``./run up`` and ``./run test`` check, read from ./run."""
    out = subprocess.run(["bash", "-c", f'source {shlex.quote(str(RUN))}; '
                          'printf "%s\\n" "${UP_PACKAGES[@]}" "${TEST_PACKAGES[@]}"'],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return sorted({tuple(line.split(":", 1)) for line in out.split()})  # type: ignore[misc]


PAIRS = _pairs()


def _said(result: subprocess.CompletedProcess[str], *words: str) -> bool:
    """One line of stderr names every one of ``words``."""
    return any(all(w in line for w in words) for line in result.stderr.splitlines())


def test_the_steps_check_what_up_and_test_need() -> None:
    commands = {c for c, _ in PAIRS}
    assert {"bwrap", "pasta", "nft", "git", "dockerd", "chromium", "debootstrap"} <= commands


@pytest.mark.parametrize(("command", "package"), PAIRS, ids=[c for c, _ in PAIRS])
def test_a_missing_program_is_installed_or_named(tmp_path: Path, command: str,
                                                 package: str) -> None:  # fmt: skip
    # "websockify,novnc": the program's package, then one that comes with it (no command).
    first, *more = package.split(",")
    packages = {first: command}
    step = f"need_debian {shlex.quote(command + ':' + package)}"
    host = _host(tmp_path, command, packages)
    done = host.run(step)
    assert done.returncode == 0, done.stderr
    assert host.has(command)
    assert host.installed() == [first, *more]
    assert _said(done, "installing Debian packages", first, *more)

    host = _host(tmp_path / "fail", command, packages)
    failed = host.run(step, apt="fail")
    assert failed.returncode == 2, failed.stderr
    assert _said(failed, "could not install", first, *more), failed.stderr

    host = _host(tmp_path / "user", command, packages)
    user = host.run(step, uid=1000)
    assert user.returncode == 2
    assert _said(user, "install these packages first", first, *more)
    assert host.installed() == []


def test_a_missing_runsc_is_installed_or_named(tmp_path: Path) -> None:
    host = _host(tmp_path, "runsc", {"runsc": "runsc"})
    done = host.run("need_runsc && runsc --version")
    assert done.returncode == 0, done.stderr
    assert RUNSC_VERSION in done.stdout
    assert _said(done, "installing Debian packages", "runsc")

    # Only gvisor machines need it: the rest goes on, and a line says what is missing.
    host = _host(tmp_path / "fail", "runsc", {"runsc": "runsc"})
    failed = host.run("need_runsc; echo went-on", apt="fail")
    assert "went-on" in failed.stdout
    assert _said(failed, "could not install", "runsc")
    host = _host(tmp_path / "user", "runsc", {"runsc": "runsc"})
    user = host.run("need_runsc; echo went-on", uid=1000)
    assert "went-on" in user.stdout
    assert _said(user, "gvisor machines need runsc", "install")


def test_an_old_runsc_is_replaced(tmp_path: Path) -> None:
    host = _host(tmp_path, "runsc", {"runsc": "runsc"})
    old = host.root / "bin" / "runsc"
    old.write_text('#!/bin/sh\necho "runsc version 0.0~20221219.0"\n')
    old.chmod(0o755)
    done = host.run("need_runsc && runsc --version")
    assert done.returncode == 0, done.stderr
    assert RUNSC_VERSION in done.stdout
    assert _said(done, "installing Debian packages", "runsc", "20221219")


def test_a_python_without_venv_gets_its_venv_package(tmp_path: Path) -> None:
    ver = "{}.{}".format(*sys.version_info[:2])
    package = f"python{ver}-venv"
    host = _host(tmp_path, "python3", {package: ".venv-module"})
    done = host.run("need_python python3")
    assert done.returncode == 0, done.stderr
    assert package in host.installed()
    assert _said(done, "installing Debian packages", package)

    host = _host(tmp_path / "fail", "python3", {package: ".venv-module"})
    failed = host.run("need_python python3", apt="fail")
    assert failed.returncode == 2
    assert _said(failed, "could not install", package)
    host = _host(tmp_path / "user", "python3", {package: ".venv-module"})
    user = host.run("need_python python3", uid=1000)
    assert user.returncode == 2
    assert _said(user, "install these packages first", package)


def test_no_python_at_all_is_named(tmp_path: Path) -> None:
    host = _host(tmp_path, "python3", {})
    (host.root / "bin" / "python3").unlink()
    gone = host.run("need_python python3")
    assert gone.returncode == 2
    assert _said(gone, "no 'python3'", "install python3")


def test_a_failing_command_is_named_never_silent(tmp_path: Path) -> None:
    """The catch-all: a step with no message of its own still ends with a line naming it."""
    host = _host(tmp_path, "nothing-hidden", {})
    done = host.run("false_step() { sha256sum /nonexistent/file >/dev/null; }; false_step")
    assert done.returncode != 0
    assert _said(done, "./run stopped", "sha256sum /nonexistent/file")
