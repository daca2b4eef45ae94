"""The docker provider's machine image: Python >= 3.11, git, ca-certificates, the daemon.

Built in two layers, each cached under a tag derived from its recipe, so nothing is rebuilt
unless its inputs changed:

- the base, ``fleetd-base:<key>``: FLEET_DOCKER_BASE_IMAGE when it is present or can be pulled;
  otherwise (no registry reachable, as on CI) a Debian root file system made by ``debootstrap``
  from the mirror this host's apt already uses, ``docker import``-ed;
- the machine image, ``fleetd-machine:<key>``: the base, a ``fleet`` user (uid 1000), the
  daemon's dependencies as wheels built on this host (``pip wheel``, the versions the platform
  runs) unpacked into ``/opt/fleet/lib``, and the daemon's code (``contracts``, ``base``,
  ``daemon``). Its key covers the base, the recipe and every daemon source file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.metadata as md
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiodocker
import structlog
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from base.retry import Backoff, retry_until
from base.version import SOURCE_ROOT, package_version
from contracts.daemon.machine_files import SSHD_CONFIG, SSHD_HOST_KEY
from contracts.errors import ProviderError
from providers import scratch
from providers.code import DAEMON_TREES

log = structlog.get_logger(__name__)

Say = Callable[[str], None]
IMAGE_REPO = "fleetd-machine"
BASE_REPO = "fleetd-base"
#: The scratch directories a root file system is built in, under the builder's work directory.
_ROOTFS_PREFIX = "rootfs-"
#: The daemon's third-party imports (nothing else of the platform's dependencies); packaging
#: orders versions when a newer daemon takes over; dulwich (with urllib3 and, on Python 3.11,
#: typing_extensions) clones a repo in an image that has no git (daemon/gitclone.py); pillow
#: encodes the desktop's screenshots (daemon/desktop/image.py).
DAEMON_DEPS = ("nats-py", "msgspec", "structlog", "packaging", "dulwich", "urllib3",
               "typing_extensions", "pillow")  # fmt: skip
#: The code interpreter's kernels (daemon/code/kernels.py): a machine brings them, and all they
#: import, with the daemon's libraries (read-only, nothing installed in the machine), at the
#: versions the platform runs; and pip, which installs into the machine's Python site
#: (daemon/code/site.py): Debian's python3 here has neither pip nor ensurepip.
KERNEL_DEPS = ("jupyter_client", "ipykernel", "bash_kernel", "orjson", "pip")
#: What the offline base holds beyond Debian's minimal variant (openssh-server: an SSH server
#: the machine's user runs on its loopback, reached through a tunnel; see SSHD_CONFIG).
BASE_PACKAGES = ("python3", "git", "ca-certificates", "openssh-server")
#: The desktop's programs (daemon/desktop/programs.py, docs/desktop.md): a virtual X server, a
#: window manager, the input tool, the browser and its fonts, the live view's VNC server,
#: websocket bridge and noVNC page: installed with apt over the base, from its own sources
#: (debootstrap's minimal variant cannot configure Chromium's dependencies itself).
DESKTOP_PACKAGES = ("xvfb", "matchbox-window-manager", "xdotool", "chromium", "fonts-liberation",
                    "x11vnc", "websockify", "novnc")  # fmt: skip
MACHINE_UID = 1000
MACHINE_HOME = "/home/fleet"
#: Where a machine's container has its secret volume: its token, and the ``passwd`` and
#: ``group`` that name its own uid (providers/docker/users.py), which NSS reads first.
SECRET_MOUNT = "/run/fleet/secret"  # noqa: S105 - a path
#: (The supervisor spawns argv[0] as a path: env finds python3 wherever the base has it.)
#: Bumped when the recipe below changes in a way its text does not show.
RECIPE_VERSION = "3"
FLEET_LIB = "/usr/local/lib/fleet"
#: Where the image holds the daemon's code (and its libraries).
DAEMON_LIB = "/opt/fleet/lib"
#: The machine's SSH server: the machine's own user, on its loopback only, keys only (from
#: instances.setSshKeys), a host key of its own in the home (made at setup). Every session
#: starts as daemon/ssh_session.py (ForceCommand), which gives it the machine's environment
#: (daemon/processes/env.py) and becomes the shell or command asked for; sftp is the external
#: server,
#: a command like any other (the in-process one would bypass the ForceCommand).
SSHD_CONFIG_TEXT = f"""\
Port 22
ListenAddress 127.0.0.1
ListenAddress ::1
HostKey {SSHD_HOST_KEY}
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers fleet
X11Forwarding no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
ForceCommand PYTHONPATH={DAEMON_LIB} exec {FLEET_LIB}/python3 -s -P -m daemon.ssh_session
"""
LOADER = f"{FLEET_LIB}/ld.so"
DOCKERFILE = f"""\
FROM {{base}}
RUN (getent passwd {MACHINE_UID} >/dev/null || useradd --create-home --uid {MACHINE_UID} \
    --user-group --shell /bin/sh fleet) && mkdir -p {MACHINE_HOME} \
    && chown {MACHINE_UID}:{MACHINE_UID} {MACHINE_HOME} && python3 -c 'import sys; \
assert sys.version_info >= (3, 11), sys.version'
# sshd runs as the machine's user (the setup pusher starts it, without the daemon's environment):
# its privilege-separation directory must exist on the read-only system, and the package's
# root-only host keys are of no use to it (it makes its own in the home).
RUN mkdir -p /run/sshd && chmod 0755 /run/sshd && rm -f /etc/ssh/ssh_host_*
# The desktop's programs, where the base lacks them.
RUN command -v Xvfb >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends {" ".join(DESKTOP_PACKAGES)} \
    && rm -rf /var/lib/apt/lists/*)
COPY sshd_config {SSHD_CONFIG}
COPY lib {DAEMON_LIB}
# Compiled once here: the machine cannot write there, and every daemon would compile it again.
RUN python3 -m compileall -q {DAEMON_LIB}
# An execute-only copy of the dynamic loader (root's, mode 0111): the supervisor and the daemon
# run through it, so the kernel makes them non-dumpable and the machine's own commands cannot
# read their environment or memory (the token). See daemon/supervision/nodump.py. It reads no
# /etc/ld.so.preload (base/loader.py): an environment's image has its own /etc.
RUN mkdir -p {FLEET_LIB} && ln -s "$(readlink -f "$(command -v python3)")" {FLEET_LIB}/python3 \
    && PYTHONPATH={DAEMON_LIB} python3 -m base.loader "$(python3 -c "print(next( \
l.split()[-1] for l in open('/proc/self/maps') if '/ld-' in l))")" {LOADER}
# The user's name is the machine's own uid's (providers/docker/users.py): the platform writes
# a passwd and a group naming it into the machine's secret volume, which NSS asks first
# (libnss-extrausers reads /var/lib/extrausers, a link to it), then the image's own files (which
# an image built FROM this one may still change; a container of it without them: those alone).
RUN (dpkg -s libnss-extrausers >/dev/null 2>&1 || (apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnss-extrausers \
    && rm -rf /var/lib/apt/lists/*)) && rm -rf /var/lib/extrausers \
    && ln -s {SECRET_MOUNT} /var/lib/extrausers \
    && sed -i -E 's/^(passwd|group):[[:space:]]+/\\1: extrausers /' /etc/nsswitch.conf \
    && grep -q '^passwd: extrausers' /etc/nsswitch.conf
ENV PYTHONPATH={DAEMON_LIB} PYTHONDONTWRITEBYTECODE=1 HOME={MACHINE_HOME} \
    FLEET_HOME={MACHINE_HOME} FLEET_SANDBOXED=1 FLEET_NODUMP_LOADER={LOADER}
USER {MACHINE_UID}:{MACHINE_UID}
WORKDIR {MACHINE_HOME}
CMD ["{LOADER}", "{FLEET_LIB}/python3", "-s", "-P", "-m", "daemon.supervise", \
     "{LOADER}", "{FLEET_LIB}/python3", "-s", "-P", "-m", "daemon"]
"""


def _daemon_sources() -> list[Path]:
    return sorted(
        p for tree in DAEMON_TREES for p in (SOURCE_ROOT / tree).rglob("*.py") if p.is_file()
    )


def _dep_pins() -> list[str]:
    pins = {canonicalize_name(name): md.version(name) for name in DAEMON_DEPS}
    return [f"{name}=={version}" for name, version in (pins | _installed(KERNEL_DEPS)).items()]


def _installed(roots: tuple[str, ...]) -> dict[str, str]:
    """``roots`` and what they require, as this Python has them (their markers for it): each
    distribution's version, by its normalized name."""
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        dist = md.distribution(todo.pop())
        name = canonicalize_name(dist.metadata["Name"])
        if name in found:
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def machine_key(base: str) -> str:
    h = hashlib.sha256(
        f"{RECIPE_VERSION}\n{DOCKERFILE}\n{SSHD_CONFIG_TEXT}\n{base}\n{_dep_pins()}\n".encode()
    )
    h.update(package_version().encode())
    for path in _daemon_sources():
        h.update(str(path.relative_to(SOURCE_ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def host_apt_source() -> tuple[str, str]:
    """(mirror URL, suite) of this host's Debian apt sources (deb822 or one-line format)."""
    suite = _os_release().get("VERSION_CODENAME", "bookworm")
    texts = [p.read_text() for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for text in texts:
        for stanza in text.split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if suite in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0], suite
    with_list = Path("/etc/apt/sources.list")
    for line in with_list.read_text().splitlines() if with_list.exists() else []:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb" and parts[2] == suite:
            return parts[1], suite
    return "http://deb.debian.org/debian", suite


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    return {k: v.strip('"') for k, v in re.findall(r"^(\w+)=(.*)$", text, re.M)}


class ImageBuilder:
    """Builds what is missing of the machine image on one Docker engine; ``say`` reports each
    step (``fleet image build`` prints them; the provisioner logs them)."""

    def __init__(self, docker: aiodocker.Docker, base_image: str, work_dir: Path, say: Say):
        self.docker = docker
        self.base_image = base_image
        self.work_dir = work_dir
        self.say = say
        self._lock = asyncio.Lock()
        self._known: str | None = None

    async def ensure(self) -> str:
        """The machine image's tag, built first if this engine lacks it (looked for once per
        process while it stays there: a machine start does not try a pull each time)."""
        async with self._lock:
            if self._known is not None and await self._has(self._known):
                return self._known
            self._known = await self._ensure()
            return self._known

    async def _ensure(self) -> str:
        base = await self._base()
        tag = f"{IMAGE_REPO}:{machine_key(base)}"
        if await self._has(tag):
            self.say(f"{tag} is up to date (its key covers the recipe, the base and the code)")
            return tag
        self.say(f"building {tag} from {base} ...")
        await self._build_machine(base, tag)
        self.say(f"built {tag}")
        return tag

    async def _has(self, ref: str) -> bool:
        try:
            await self.docker.images.inspect(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            # Not "missing": an engine that does not answer (900) must not start a build (a
            # debootstrap of minutes, the lock held) that it cannot finish anyway.
            raise ProviderError(f"docker: looking for image {ref}: {_short(exc)}") from None
        return True

    async def _base(self) -> str:
        if self.base_image:
            if await self._has(self.base_image):
                return self.base_image
            self.say(f"pulling {self.base_image} ...")
            try:
                await asyncio.wait_for(self.docker.images.pull(self.base_image), timeout=120)
                return self.base_image
            except (aiodocker.DockerError, TimeoutError) as exc:
                self.say(f"cannot pull {self.base_image} ({_short(exc)}): building offline")
        mirror, suite = host_apt_source()
        return await self.debian(mirror, suite, BASE_PACKAGES)

    async def debian(self, mirror: str, suite: str, packages: tuple[str, ...]) -> str:
        """The tag of a minimal Debian ``suite`` with ``packages``, made by debootstrap from
        ``mirror`` and imported if this engine lacks it (its tag covers all three)."""
        key = hashlib.sha256(f"{mirror} {suite} {packages}".encode()).hexdigest()[:12]
        tag = f"{BASE_REPO}:{suite}-{key}"
        if not await self._has(tag):
            await self._debootstrap(tag, mirror, suite, packages)
        return tag

    async def _debootstrap(
        self, tag: str, mirror: str, suite: str, packages: tuple[str, ...]
    ) -> None:
        if shutil.which("debootstrap") is None:
            raise ProviderError("building the machine image offline needs debootstrap: "
                                "apt-get install debootstrap (./run test installs it)")  # fmt: skip
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Kept until imported: a failed import does not cost another debootstrap.
        tar = self.work_dir / f"rootfs-{tag.partition(':')[2]}.tar"
        if not tar.exists():
            async with _work_dir_lock(self.work_dir):
                if not tar.exists():  # another process may have made it meanwhile
                    await self._rootfs_tar(tar, mirror, suite, packages)
        self.say(f"docker import of the root file system as {tag} ...")
        await self._import(tar, tag)
        if not await self._has(tag):
            raise ProviderError(f"docker import of {tag} did not produce the image")
        tar.unlink()

    async def _rootfs_tar(
        self, tar: Path, mirror: str, suite: str, packages: tuple[str, ...]
    ) -> None:
        # What a killed build left (its /proc still mounted, say) goes first.
        await asyncio.to_thread(scratch.sweep, self.work_dir, _ROOTFS_PREFIX)
        async with scratch.scratch_dir(self.work_dir, _ROOTFS_PREFIX) as tmp:
            root = tmp / "root"
            self.say(f"debootstrap {suite} from {mirror} (a few minutes, once) ...")
            include = f"--include={','.join(packages)}"
            await _run(["debootstrap", "--variant=minbase", include, suite, str(root), mirror])
            partial = tar.with_suffix(".partial")
            await _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
            partial.rename(tar)

    async def _import(self, tar: Path, tag: str) -> None:
        repo, _, version = tag.partition(":")
        params = {"fromSrc": "-", "repo": repo, "tag": version}
        headers = {"Content-Type": "application/x-tar"}
        with tar.open("rb") as body:
            async with self.docker._query(
                "images/create", "POST", params=params, data=body, headers=headers, timeout=None
            ) as resp:
                answer = await resp.text()
        if '"error"' in answer:
            raise ProviderError(f"docker import of {tag} failed: {answer[-300:]}")

    async def _build_machine(self, base: str, tag: str) -> None:
        async with scratch.scratch_dir(self.work_dir, "ctx-") as ctx:
            self.say(f"pip wheel {' '.join(_dep_pins())} ...")
            await asyncio.to_thread(_lib_dir, ctx)
            (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
            (ctx / "sshd_config").write_text(SSHD_CONFIG_TEXT)
            body = await asyncio.to_thread(_tar_dir, ctx)
        labels = {"fleet.image": "machine", "fleet.recipe": RECIPE_VERSION}
        try:
            out: list[dict[str, Any]] = await self.docker.images.build(
                fileobj=body, encoding="identity", tag=tag, labels=labels, rm=True, forcerm=True
            )
        except aiodocker.DockerError as exc:
            raise ProviderError(f"building {tag} failed: {_short(exc)}") from None
        errors = [str(line["error"]) for line in out if "error" in line]
        if errors:
            raise ProviderError(f"building {tag} failed: {errors[-1][:300]}")


def _lib_dir(ctx: Path) -> None:
    """``ctx/lib``: the dependencies' wheels unpacked, the daemon's code and fleetd's metadata
    (so the daemon reports the platform's version)."""
    wheels, lib = ctx / "wheels", ctx / "lib"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), *_dep_pins()],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise ProviderError(f"pip wheel failed: {out.stderr.strip()[-300:]}")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(lib)  # noqa: S202 - the platform's own pinned wheels
    for path in _daemon_sources():
        dest = lib / path.relative_to(SOURCE_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    meta = lib / f"fleetd-{package_version()}.dist-info"
    meta.mkdir()
    version = package_version()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fleetd\nVersion: {version}\n")
    shutil.rmtree(wheels)


def _tar_dir(ctx: Path) -> io.BytesIO:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        tar.add(ctx, arcname=".")
    body.seek(0)
    return body


@contextlib.asynccontextmanager
async def _work_dir_lock(work_dir: Path) -> AsyncIterator[None]:
    """One root file system build at a time in ``work_dir``, across processes: the sweep of
    what a killed build left never deletes a live one's."""
    fd = os.open(work_dir / "build.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    async def taken() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        await retry_until(taken, backoff=Backoff(1.0, 1.0, jitter=False))
        yield
    finally:
        os.close(fd)


async def _run(argv: list[str]) -> None:
    # A session of its own: a build cancelled half way (the provisioner stopping) kills the
    # debootstrap and everything it started, which would otherwise run on, orphaned.
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip()[-400:]
        raise ProviderError(f"{argv[0]} failed ({proc.returncode}): {tail}")


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
