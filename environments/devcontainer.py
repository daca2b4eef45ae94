"""A repository's devcontainer.json, read as the spec reads it, as untrusted input.

The format is JSON with comments and trailing commas (read with ``json5``, a superset). What a
machine may get from it is the spec's properties below; what would reach past the machine (host
paths, privileges, the host's network or devices, a command on the platform's host) is refused
with one ``EnvironmentRefused`` naming every such property.

Variables: ``${localWorkspaceFolderBasename}``, ``${localWorkspaceFolder}`` and
``${containerWorkspaceFolder}`` are replaced when the file is read (the two local ones with the
repo's checkout in the machine: the platform's own paths are never shown); ``${localEnv:VAR}``
is its default (or empty), never the platform's environment; ``${containerEnv:VAR[:default]}``
stays until the machine's environment is known (``expand_container_env``).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

import json5
import msgspec

from contracts.errors import EnvironmentInvalid, EnvironmentRefused

#: The largest devcontainer.json (or devcontainer-feature.json) read.
MAX_CONFIG_BYTES = 256 * 1024
LIFECYCLE = (
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
)
#: Properties that never reach a machine whatever their value: each gives the machine
#: something of the host (or runs on it).
_REFUSED_ALWAYS = (
    "runArgs",
    "dockerComposeFile",
    "initializeCommand",
    "workspaceMount",
    "appPort",
    "devices",
)
_NON_EMPTY = ("capAdd", "securityOpt")
_VAR = re.compile(r"\$\{([A-Za-z]+)(?::([^}:]*)(?::([^}]*))?)?\}")

# A command: a shell line, an argv, or named commands run in parallel.
Command = str | list[str] | dict[str, str | list[str]]


class Build(msgspec.Struct, kw_only=True, frozen=True):
    #: Relative to the repo's root (resolved from the devcontainer.json's folder).
    dockerfile: str
    context: str
    args: dict[str, str] = {}
    target: str | None = None


class PortAttributes(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    label: str | None = None
    protocol: str | None = None


class HostRequirements(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    cpus: int | None = None
    memory_bytes: int | None = None


class Devcontainer(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """What fleetd takes from a devcontainer.json (paths relative to the repo's root)."""

    #: The devcontainer.json's path in the repo.
    path: str
    image: str | None = None
    build: Build | None = None
    container_env: dict[str, str] = {}
    remote_env: dict[str, str] = {}
    #: By lifecycle name (``LIFECYCLE``), only those given.
    lifecycle: dict[str, Command] = {}
    forward_ports: list[int] = []
    #: By port (as the file keys them: a number, a range ``3000-3005``, or a pattern).
    ports_attributes: dict[str, PortAttributes] = {}
    remote_user: str | None = None
    container_user: str | None = None
    host_requirements: HostRequirements | None = None
    #: Feature id -> its options, as written.
    features: dict[str, dict[str, Any]] = {}


def loads(text: bytes, name: str) -> dict[str, Any]:
    """A JSON-with-comments object; EnvironmentInvalid with the line and column if malformed."""
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EnvironmentInvalid(f"{name} is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json5.loads(decoded)
    except ValueError as exc:
        raise EnvironmentInvalid(f"{name} is not valid JSON: {_where(str(exc))}") from None
    if not isinstance(doc, dict):
        raise EnvironmentInvalid(f"{name} must hold a JSON object")
    return doc


def _where(message: str) -> str:
    # json5 says "<string>:LINE Unexpected ... at column COL"; say it as people read it.
    m = re.match(r"<string>:(\d+) (.*?)(?: at column (\d+))?$", message)
    if m is None:
        return message
    line, what, col = m.groups()
    return f"line {line}" + (f", column {col}" if col else "") + f": {what}"


def refused(doc: dict[str, Any]) -> list[str]:
    """The properties of ``doc`` fleetd refuses, each as ``name`` or ``name: why``."""
    out = [k for k in _REFUSED_ALWAYS if k in doc]
    if doc.get("privileged"):
        out.append("privileged")
    out += [k for k in _NON_EMPTY if doc.get(k)]
    for key in ("network", "networkMode"):
        if doc.get(key) == "host":
            out.append(f"{key}: host networking")
    for mount in doc.get("mounts") or []:
        kind = mount.get("type") if isinstance(mount, dict) else _mount_type(str(mount))
        if kind != "tmpfs":
            out.append(f"mounts: {_mount_text(mount)} ({kind or 'bind'} mounts are refused)")
    return out


def _mount_type(spec: str) -> str | None:
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key.strip() == "type":
            return value.strip()
    return None


def _mount_text(mount: Any) -> str:
    if isinstance(mount, dict):
        return ",".join(f"{k}={v}" for k, v in mount.items())
    return str(mount)


def check_refused(doc: dict[str, Any], name: str) -> None:
    bad = refused(doc)
    if bad:
        raise EnvironmentRefused(
            f"{name}: refused (a machine gets nothing of the host): {'; '.join(bad)}",
            data={"properties": [b.split(":", 1)[0] for b in bad]},
        )


def parse(text: bytes, path: str, *, workspace: str) -> Devcontainer:
    """The devcontainer.json at ``path`` (in the repo) with contents ``text``; ``workspace``
    is the repo's checkout in the machine (``${containerWorkspaceFolder}``). Raises
    EnvironmentRefused or EnvironmentInvalid."""
    doc = substitute(loads(text, path), workspace)
    check_refused(doc, path)
    try:
        return _settings(doc, path)
    except (TypeError, ValueError, msgspec.ValidationError) as exc:
        raise EnvironmentInvalid(f"{path}: {exc}") from None


def substitute(value: Any, workspace: str) -> Any:
    """``value`` with the variables known when reading replaced (``${containerEnv:...}``
    kept), in every string of it."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: _local(m, workspace), value)
    if isinstance(value, list):
        return [substitute(v, workspace) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, workspace) for k, v in value.items()}
    return value


def _local(m: re.Match[str], workspace: str) -> str:
    name, _arg, default = m.groups()
    if name in ("containerWorkspaceFolder", "localWorkspaceFolder"):
        return workspace
    if name in ("containerWorkspaceFolderBasename", "localWorkspaceFolderBasename"):
        return posixpath.basename(workspace.rstrip("/"))
    if name == "localEnv":  # the platform's environment is not the project's to read
        return default or ""
    return m.group(0)


def expand_container_env(value: str, env: dict[str, str]) -> str:
    """``value`` with ``${containerEnv:VAR[:default]}`` from the machine's environment."""

    def one(m: re.Match[str]) -> str:
        name, arg, default = m.groups()
        if name != "containerEnv" or not arg:
            return m.group(0)
        return env.get(arg, default or "")

    return _VAR.sub(one, value)


def _settings(doc: dict[str, Any], path: str) -> Devcontainer:
    here = posixpath.dirname(path)
    build = doc.get("build")
    if build is None and "dockerFile" in doc:  # the spec's older spelling
        build = {"dockerfile": doc["dockerFile"], "context": doc.get("context")}
    raw = {
        "path": path,
        "image": doc.get("image"),
        "build": _build(build, here) if build is not None else None,
        "container_env": doc.get("containerEnv") or {},
        "remote_env": {k: v for k, v in (doc.get("remoteEnv") or {}).items() if v is not None},
        "lifecycle": {k: doc[k] for k in LIFECYCLE if doc.get(k)},
        "forward_ports": [_port(p) for p in doc.get("forwardPorts") or []],
        "ports_attributes": {
            str(k): _attrs(v) for k, v in (doc.get("portsAttributes") or {}).items()
        },
        "remote_user": doc.get("remoteUser"),
        "container_user": doc.get("containerUser"),
        "host_requirements": _host_requirements(doc.get("hostRequirements")),
        "features": doc.get("features") or {},
    }
    settings = msgspec.convert(raw, Devcontainer)
    if settings.image is None and settings.build is None:
        raise ValueError("has neither `image` nor `build.dockerfile`")
    return settings


def _build(build: Any, here: str) -> dict[str, Any]:
    if not isinstance(build, dict) or not isinstance(build.get("dockerfile"), str):
        raise ValueError("`build` must be an object with `dockerfile`")
    context = build.get("context") or "."
    return {
        "dockerfile": in_repo(posixpath.join(here, build["dockerfile"]), "build.dockerfile"),
        "context": in_repo(posixpath.join(here, context), "build.context"),
        "args": {str(k): str(v) for k, v in (build.get("args") or {}).items()},
        "target": build.get("target"),
    }


def in_repo(path: str, what: str) -> str:
    """``path`` normalised, refused if it leaves the repo."""
    norm = posixpath.normpath(path)
    if norm.startswith(("/", "..")) or "\x00" in norm:
        raise ValueError(f"`{what}` must stay inside the repo: {path!r}")
    return norm


def _port(port: Any) -> int:
    # "host:port" names a port of another container; a machine has only its own.
    if isinstance(port, str) and ":" in port:
        host, _, port = port.rpartition(":")
        if host not in ("localhost", "127.0.0.1"):
            raise ValueError(f"forwardPorts: {host}:{port} is not a port of the machine")
    value = int(port)
    if not 1 <= value <= 65535:
        raise ValueError(f"forwardPorts: {port} is not a port")
    return value


def _attrs(attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise ValueError("portsAttributes values must be objects")
    return {"label": attrs.get("label"), "protocol": attrs.get("protocol")}


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)


def _host_requirements(req: Any) -> dict[str, Any] | None:
    if not req:
        return None
    memory, cpus = req.get("memory"), req.get("cpus")
    # The engine reads 0 as no limit at all: a machine asks for something or for nothing.
    if cpus is not None and (not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1):
        raise ValueError(f"hostRequirements.cpus: {cpus!r} is not a whole number of at least 1")
    size = None if memory is None else parse_size(memory)
    if size is not None and size < 2**20:
        raise ValueError(f"hostRequirements.memory: {memory!r} is less than 1mb")
    return {"cpus": cpus, "memory_bytes": size}


def parse_size(text: str) -> int:
    """``4gb``, ``512mb``, ``1.5g`` in bytes (the spec's hostRequirements sizes)."""
    m = _SIZE.match(str(text))
    if m is None:
        raise ValueError(f"hostRequirements: {text!r} is not a size such as 4gb")
    exp = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**exp)
