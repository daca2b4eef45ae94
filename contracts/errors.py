"""One root exception with a stable code, a subclass per kind, one table of them all.

JSON-RPC's own codes (-32700 .. -32603) come first; application codes are positive and stable:
clients may switch on them. ``error_from_wire`` turns a JSON-RPC error back into the exception.

Each kind carries its HTTP status (``http_status``), the one table every HTTP route derives
from: a route that answers one call with one error (files GET/PUT, a session's attach, a tunnel,
a preview, and ``/rpc`` when it refuses the request itself: no token, too large, rate limited,
failing over) answers that status with the JSON-RPC error as its body and, for clients that see
only headers (a refused WebSocket handshake), in ``ERROR_HEADER`` too. ``/rpc`` answers a single
call that fails the same way, with its error's status; a batch is answered 200 (it holds many
answers), unless it is refused as a whole. 1501 ``Unavailable`` is 503 with Retry-After, so that
HTTP-level retries work.
``error_from_http`` turns any of those answers back into the exception.

The machine side behind the gateway not answering (no daemon, a broken stream, a port nothing
listens on) is 502; 503 is kept for the platform's own failover, which a client retries as it
is (``Unavailable``); a daemon that does not answer in time is 504.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class FleetError(Exception):
    """The root of every error fleetd reports to a caller."""

    code: ClassVar[int] = -32603
    #: The HTTP status of a route that answers one call with this error (see the module).
    http_status: ClassVar[int] = 500

    def __init_subclass__(cls, *, code: int | None = None, http_status: int | None = None) -> None:
        """A kind says its code and status in its class line: ``class X(FleetError, code=1,
        http_status=400)``."""
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


# --- JSON-RPC 2.0 protocol errors -------------------------------------------------------------
class ParseError(FleetError, code=-32700, http_status=400): ...


class InvalidRequest(FleetError, code=-32600, http_status=400): ...


class MethodNotFound(FleetError, code=-32601, http_status=404): ...


class InvalidParams(FleetError, code=-32602, http_status=400):
    """Bad params; ``data.field`` names the offending field (a JSON path like ``$.mode``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, data={"field": field} if field else None)
        self.field = field


class InternalError(FleetError, code=-32603, http_status=500): ...


# --- application errors -----------------------------------------------------------------------
class Unauthorized(FleetError, code=1001, http_status=401): ...


class Forbidden(FleetError, code=1003, http_status=403): ...


class NotFound(FleetError, code=1004, http_status=404): ...


class Conflict(FleetError, code=1009, http_status=409): ...


class IdempotencyKeyReused(FleetError, code=1022, http_status=409):
    """An ``idempotencyKey`` this token already used for a call with other params (another
    instance or provider): the key names one logical call, so it is refused, not rerun.
    ``data.machineId`` is the machine the key was first used for."""


class MachineStopped(FleetError, code=1040, http_status=409):
    """The machine is stopped: nothing on it answers until ``machines.start`` brings it back.
    Answered at once (never a timeout); ``data.hint`` says how to start it."""


class NeverStarted(FleetError, code=1042, http_status=409):
    """``machines.start`` of a failed machine its provider never made anything of (it failed
    before a host placed it, or before its provider started it): there is no home nor sandbox
    to start. ``machines.rebuild`` makes a new machine in its place (or ``machines.archive``,
    then ``machines.create``). ``data.status``: ``failed``."""


class RunningMachinesLimit(FleetError, code=1041, http_status=409):
    """Starting (or creating) this machine would pass the instance's ``maxRunningMachines``;
    ``data.limit`` and ``data.running`` say by how much."""


class SnapshotLimit(FleetError, code=1060, http_status=409):
    """The instance holds as many snapshots as it may (``FLEET_MAX_SNAPSHOTS``): delete one
    first; ``data.limit`` says how many."""


class DiskLimit(FleetError, code=1061, http_status=409):
    """The copy (a snapshot, a fork's home, a memory image, a paused machine's image) would
    take the instance past ``FLEET_INSTANCE_DISK_MB``, which its homes, paused images and
    snapshots share; ``data`` gives the limit, what it uses and what the copy needs, in MB."""


class HostFull(FleetError, code=1048, http_status=409):
    """Starting this stopped machine would take its host past its ``FLEET_HOST_CAPACITY``, or
    the host is below its ``FLEET_HOST_MIN_AVAILABLE_MB``. A machine's home stays on its host
    (no provider moves one), so the start waits for room there: stop or archive another of the
    host's machines, or rebuild this one (a new machine, placed on a host with room).
    ``data``: ``hostId``, ``capacity``, ``running``, ``memoryLow``."""


class PayloadTooLarge(FleetError, code=1013, http_status=413): ...


class RateLimited(FleetError, code=1029, http_status=429):
    """Too many calls of one kind from one token (or bad-token requests from one address);
    ``data.retryAfterS`` says when the next one will be accepted."""


class StreamAborted(FleetError, code=1045, http_status=502):
    """A byte stream ended without its end frame: its peer aborted it (the reason says why),
    broke the protocol (a lost chunk, more bytes than its credit) or fell silent."""


class TooManyStreams(FleetError, code=1046, http_status=429):
    """The machine already has as many open byte streams (or sessions) as it allows."""


# --- files in a machine's home (1049-1054) ----------------------------------------------------
class BadPath(FleetError, code=1049, http_status=400):
    """A path the machine's file system cannot use as it is: a name in it longer than 255
    bytes, or too many levels of links. ``data.reason`` names which (``nameTooLong``,
    ``linkLoop``). A component that is not a directory is ``WrongFileKind``."""


class FileTooLarge(FleetError, code=1050, http_status=413):
    """A file too big to travel in one message: ``data.size`` and ``data.limit`` say by how
    much; download it as a stream instead (``fleet machines cp``, or
    ``GET /machines/{machineId}/files/{path}``)."""


class FileNotFound(FleetError, code=1051, http_status=404):
    """Nothing at that path in the machine's home."""


class WrongFileKind(FleetError, code=1052, http_status=409):
    """The path holds another kind of thing than the method works on: a directory where a
    file was wanted, a file where a directory was, a FIFO or a device, a directory that is
    not empty (``recursive`` not given). ``data.kind`` names what is there."""


class NotText(FleetError, code=1053, http_status=422):
    """The file is not UTF-8 text: ask for it with ``encoding: "base64"``."""


class TransferAborted(FleetError, code=1054, http_status=502):
    """A streamed upload or download did not complete (the other side went away, stopped
    granting credit, sent a different number of bytes than announced, or aborted); an upload
    that ends so leaves nothing at its path."""


class RequestExpired(FleetError, code=1101, http_status=502): ...


class RequestReplayed(FleetError, code=1102, http_status=502): ...


class ReplyForged(FleetError, code=1103, http_status=502):
    """A daemon's answer whose MAC does not verify: whoever answered does not hold the
    machine's key, so the answer is not believed."""


class Unavailable(FleetError, code=1501, http_status=503):
    """The gateway's store or bus is failing over (the valkey primary or a NATS node is gone,
    JetStream is electing a leader): nothing is wrong with the request, so send it again after
    ``data.retryAfterMs``. Answered with HTTP 503 and ``Retry-After`` for a single request."""

    def __init__(self, message: str, *, retry_after_ms: int = 1000) -> None:
        super().__init__(message, data={"retryAfterMs": retry_after_ms})
        self.retry_after_ms = retry_after_ms


class DaemonUnavailable(FleetError, code=1502, http_status=502):
    """No daemon answers on the machine's RPC subject (not running, or not connected)."""


class HostUnavailable(FleetError, code=1505, http_status=502):
    """No provisioner of the machine's host answers (the host is lost, or its provisioner is
    down): what only that host can do (restart a daemon, install code) waits for it. With
    ``data.outcome`` ``"unknown"``: the provisioner that took the call stopped answering while
    it worked on it, so what it did is not known (ask again)."""


class DaemonTimeout(FleetError, code=1504, http_status=504): ...


class CodemodeUnavailable(FleetError, code=1503, http_status=503):
    """No codemode service answers (not running, or every replica is at its limit)."""


class ProviderError(FleetError, code=1600, http_status=500): ...


class NotSupported(FleetError, code=1601, http_status=501): ...


class ImageNotFound(FleetError, code=1610, http_status=404):
    """An environment's image is not on the machine's Docker engine (its reference is in the
    message); the machine fails at stage ``environment``."""


class ImageRefused(FleetError, code=1611, http_status=403):
    """An environment names an image its instance may not use: another instance's build or
    fork layer (``fleetd-env:*``, ``fleetd-layer:*``), or an image by its ID or an ID's prefix
    rather than by a registry name. Said the same whether or not the engine has that image.
    Allowed: registry-named images, the platform's own (``fleetd-machine:*``), the instance's
    own builds and layers."""


class ToolError(FleetError, code=1700, http_status=500):
    """A tool could not do its work on the machine (a file system error, a missing cwd)."""


# --- the code interpreter: machines.code.* (1701-1709) ---------------------------------------
class LanguageUnavailable(FleetError, code=1701, http_status=422):
    """The machine has no kernel for that language; ``data.languages`` lists the ones it has."""


class KernelDied(FleetError, code=1702, http_status=502):
    """The context's kernel is dead (killed, out of memory, exited): its state is gone. The
    next call in the context starts a new kernel. ``data.contextId`` names the context."""


class CodeContextsLimit(FleetError, code=1703, http_status=409):
    """The machine has as many code contexts as it may (``FLEET_CODE_CONTEXTS_MAX``): delete
    one first; ``data.limit`` says how many."""


# --- the desktop: machines.desktop.* (1710-1719) -----------------------------------------------
class DesktopUnavailable(FleetError, code=1710, http_status=422):
    """The machine lacks a program the desktop needs (its X server for ``start``, its browser
    for ``open``); ``data.missing`` names it (docs/desktop.md says which machines have them)."""


class DesktopNotRunning(FleetError, code=1711, http_status=409):
    """The machine's display does not run: ``machines.desktop.start`` it first."""


# --- ports: tunnels and preview URLs (1055-1059) ---------------------------------------------
class PortUnreachable(FleetError, code=1055, http_status=502):
    """Nothing in the machine accepts connections on that port of its loopback (refused, or
    the connection did not complete in time). ``data.port`` is the port."""


class BadUpstream(FleetError, code=1056, http_status=502):
    """The program behind a preview URL answered something that is not HTTP/1.x."""


class IdTokenRejected(FleetError, code=1080, http_status=401):
    """An OpenID sign-in's ID token was refused; ``data.reason`` names the check it failed:
    ``signature`` (not signed by a key of the provider's), ``algorithm`` (not an allowed one;
    ``none`` never is), ``issuer``, ``audience``, ``expired``, ``issued-at`` (from the future,
    past the allowed skew), ``nonce`` (not the one this sign-in sent), ``claims`` (missing),
    ``userinfo`` (the provider's UserInfo is about another subject, or not a JSON object),
    ``email-unverified`` (an unknown subject whose email the provider does not vouch for),
    ``account-bound`` (the email is a user's who signs in with another subject)."""


class SignInStateRejected(FleetError, code=1081, http_status=400):
    """An OpenID callback's ``state`` is unknown, already used, expired, or not this browser's."""


class CsrfRejected(FleetError, code=1082, http_status=403):
    """A cookie-authenticated state change without its CSRF token (``X-CSRF-Token``), or a
    cookie-authenticated WebSocket from another origin."""


# --- environments: devcontainer.json, Dockerfile builds and features (1620-1629) -------------
class EnvironmentRefused(FleetError, code=1620, http_status=422):
    """A repo's environment asks for something of the host (host mounts, runArgs, privileges,
    capabilities, security options, host networking, devices, compose, a command on the host).
    The message names each refused property; ``data.properties`` lists them."""


class EnvironmentInvalid(FleetError, code=1621, http_status=422):
    """A repo's devcontainer.json or Dockerfile cannot be used: malformed JSON (with its line
    and column), a missing or oversized file, a link, a property of the wrong type."""


class BuildFailed(FleetError, code=1622, http_status=422):
    """An environment's image build failed; the message ends with the build log's last lines
    (``data.logTail``)."""


class FeatureUnavailable(FleetError, code=1623, http_status=502):
    """A devcontainer feature could not be fetched: its registry did not answer in time or
    refused it. The message names the feature and the registry."""


class HostRequirementsExceeded(FleetError, code=1624, http_status=422):
    """A devcontainer's ``hostRequirements`` ask for more CPUs or memory than the machine's
    instance may have (its limits: instances.setLimits, else the platform's). ``data`` has what
    was asked and what is allowed."""


class BuildLimitExceeded(FleetError, code=1628, http_status=422):
    """An environment's build, or the host-side clone of its repo, went over one of its limits
    (``FLEET_ENV_BUILD_*``, ``FLEET_ENV_CLONE_*``) and was stopped; nothing of it is kept.
    ``data.limit`` says which: ``memory``, ``time`` or ``disk``; ``data.of``: ``build`` or
    ``clone``."""


class EnvironmentInUse(FleetError, code=1629, http_status=409):
    """A cached environment build is not removed while a machine (neither archived nor failed)
    runs it; ``data.machines`` lists them."""


# --- repos: what repos.add checks before it stores one (1630-1639) ------------------------------
class RepoNotFound(FleetError, code=1630, http_status=422):
    """repos.add: git on the platform found no repository at the URL (or local path), or one
    it may not read with the credentials given (none: a private repo needs a token). Nothing
    is stored. The message ends with git's own words (``data.url``)."""


class BranchNotFound(FleetError, code=1631, http_status=422):
    """repos.add: the repository has no such branch. Nothing is stored (``data.url``,
    ``data.branch``)."""


def _kinds() -> dict[int, type[FleetError]]:
    """Every kind of this module (each declares its own code), by code."""
    found: dict[int, type[FleetError]] = {}
    todo: list[type[FleetError]] = [FleetError]
    while todo:
        for kind in todo.pop(0).__subclasses__():
            if "code" in vars(kind):
                if kind.code in found:
                    raise TypeError(f"{kind.__name__} has {found[kind.code].__name__}'s code")
                found[kind.code] = kind
            todo.append(kind)
    return found


#: Every error kind, by code: the one table that maps exceptions to JSON-RPC errors and back.
ERRORS = _kinds()


#: The codes a client may send the same call again for, after a wait: nothing ran. 1501: the
#: gateway's store or bus is failing over (``data.retryAfterMs``); 1502: no daemon answered on
#: the machine's RPC subject, so no daemon received the call; 1029: refused before it ran
#: (``data.retryAfterS``, or the answer's ``Retry-After``).
RETRYABLE: frozenset[int] = frozenset({Unavailable.code, DaemonUnavailable.code, RateLimited.code})


def error_from_wire(err: dict[str, Any]) -> FleetError:
    """The exception for a JSON-RPC error object received from a peer."""
    code = err.get("code")
    message = str(err.get("message", "unknown error"))
    data = err.get("data") if isinstance(err.get("data"), dict) else None
    cls = ERRORS.get(code) if isinstance(code, int) else None
    if cls is InvalidParams:
        return InvalidParams(message, field=(data or {}).get("field"))
    if cls is Unavailable:
        after = (data or {}).get("retryAfterMs")
        return Unavailable(message, retry_after_ms=after if isinstance(after, int) else 1000)
    exc = (cls or FleetError)(message, data=data)
    return exc


#: The header an HTTP error answer carries its JSON-RPC error object in, as JSON (ASCII).
ERROR_HEADER = "X-Fleet-Error"
#: The kind an HTTP status stands for when an answer carries no error object (a proxy's page).
BY_STATUS: dict[int, type[FleetError]] = {
    cls.http_status: cls
    for cls in (InvalidParams, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                RateLimited, InternalError, NotSupported, DaemonUnavailable, Unavailable,
                DaemonTimeout)
}  # fmt: skip


def error_from_http(status: int, body: bytes, header: str | None = None) -> FleetError:
    """The exception for an HTTP error answer of the gateway: its JSON-RPC error object (the
    body's, else ``ERROR_HEADER``'s); without one, the kind its status stands for."""
    for raw in (body, (header or "").encode()):
        try:
            doc = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            continue
        err = doc.get("error", doc) if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("code"), int):
            return error_from_wire(err)
    message, data = f"the gateway answered HTTP {status}", {"status": status}
    kind = BY_STATUS.get(status)
    if kind is None:
        return FleetError(message, data=data)
    return error_from_wire({"code": kind.code, "message": message, "data": data})
