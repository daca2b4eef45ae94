"""E2B's control API (REST/JSON) as fleetd's E2B front serves it: the bodies its SDKs send and
the answers they parse, written from E2B's published OpenAPI document (docs/e2b.md).

A sandbox is an instance with its one machine (its id is the machine's). Requests are read
leniently, as E2B's API reads them: an unknown field is ignored (a newer SDK adds some), a
known one of the wrong type is refused naming it; a feature fleetd does not have, asked for,
is refused naming it (``Unsupported``). Answers carry every field the SDKs' generated parsers
require. Error bodies are ``{"code": <HTTP status>, "message": ...}``: the JavaScript SDK
reads the status from ``code``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

#: The version of envd the front says its sandboxes run: at or past every feature gate of the
#: SDKs (0.6.4: watch with entries and network mounts; 0.5.7: octet-stream uploads).
ENVD_VERSION: Final = "0.6.13"
#: E2B's default sandbox timeout, and the longest fleetd allows (a day).
DEFAULT_TIMEOUT_S: Final = 300
MAX_TIMEOUT_S: Final = 86_400
#: The template the SDK asks for by default, and the code interpreter's.
BASE_TEMPLATE: Final = "base"
CODE_INTERPRETER_TEMPLATE: Final = "code-interpreter-v1"
#: envd's port, and the code interpreter's, in a sandbox's host names and headers.
ENVD_PORT: Final = 49983
INTERPRETER_PORT: Final = 49999
#: E2B's SDKs may check that an API key looks like one of E2B's (``e2b_`` and hex digits): a
#: fleetd token is handed to them in that form (its bytes in hex) and read back from it.
API_KEY_PREFIX: Final = "e2b_"
#: The header a sandbox's own requests name it by, and its port.
SANDBOX_ID_HEADER: Final = "E2b-Sandbox-Id"
SANDBOX_PORT_HEADER: Final = "E2b-Sandbox-Port"
ACCESS_TOKEN_HEADER: Final = "X-Access-Token"  # noqa: S105 - a header's name
TRAFFIC_TOKEN_HEADER: Final = "E2B-Traffic-Access-Token"  # noqa: S105 - a header's name
NEXT_TOKEN_HEADER: Final = "X-Next-Token"  # noqa: S105 - a header's name
API_KEY_HEADER: Final = "X-API-Key"
MAX_METADATA: Final = 64
MAX_ENV_VARS: Final = 256
MAX_LIST: Final = 1000

State = Literal["running", "paused"]
OnTimeout = Literal["kill", "pause"]
SandboxId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Value = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
_Timeout = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMEOUT_S)]


class _Body(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """A request body: unknown fields are ignored, as E2B's API ignores them."""


class AutoResume(_Body, kw_only=True):
    enabled: bool = False


class Network(_Body, kw_only=True):
    allow_out: list[str] | None = None
    deny_out: list[str] | None = None
    allow_public_traffic: bool | None = None
    #: Asked for, these are refused (fleetd has no such thing): named in the refusal.
    dns_servers: list[str] | None = None
    egress_proxy: dict[str, object] | None = None
    mask_request_host: str | None = None
    rules: dict[str, object] | None = None


class NewSandbox(_Body, kw_only=True):
    """``POST /v2/sandboxes`` (and the older ``POST /sandboxes``)."""

    template_id: str = msgspec.field(name="templateID")
    timeout: _Timeout | None = None
    auto_pause: bool = False
    auto_pause_memory: bool | None = None
    auto_resume: AutoResume | None = None
    allow_internet_access: bool | None = msgspec.field(default=None,
                                                       name="allow_internet_access")  # fmt: skip
    network: Network | None = None
    metadata: Annotated[dict[_Key, _Value], msgspec.Meta(max_length=MAX_METADATA)] | None = None
    env_vars: Annotated[dict[_Key, _Value], msgspec.Meta(max_length=MAX_ENV_VARS)] | None = None
    secure: bool | None = None
    #: Features of E2B's cloud: asked for (not empty), refused naming them.
    volume_mounts: list[dict[str, object]] | None = None
    mcp: dict[str, object] | None = None
    iam: dict[str, object] | None = None


class ConnectSandbox(_Body, kw_only=True):
    timeout: _Timeout | None = None
    memory: bool | None = None


class SetTimeout(_Body, kw_only=True):
    timeout: _Timeout


class PauseRequest(_Body, kw_only=True):
    memory: bool | None = None
    require_healthy_guest: bool | None = None


class NetworkUpdate(Network, kw_only=True):
    allow_internet_access: bool | None = msgspec.field(default=None,
                                                       name="allow_internet_access")  # fmt: skip


class NewSnapshot(_Body, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    memory: bool | None = None


class ForkRequest(_Body, kw_only=True):
    timeout: _Timeout | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1


class _Answer(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    pass


class Sandbox(_Answer, kw_only=True):
    """What a create, a connect or a fork answers."""

    template_id: str = msgspec.field(name="templateID")
    sandbox_id: str = msgspec.field(name="sandboxID")
    client_id: str = msgspec.field(name="clientID")
    envd_version: str = ENVD_VERSION
    alias: str | None = None
    envd_access_token: str | None = None
    traffic_access_token: str | None = None
    domain: str | None = None


class Lifecycle(_Answer, kw_only=True):
    auto_resume: bool
    on_timeout: OnTimeout


class SandboxDetail(_Answer, kw_only=True):
    """``GET /sandboxes/{id}``; a listed sandbox is the same without its token."""

    template_id: str = msgspec.field(name="templateID")
    sandbox_id: str = msgspec.field(name="sandboxID")
    client_id: str = msgspec.field(name="clientID")
    started_at: datetime
    end_at: datetime
    envd_version: str = ENVD_VERSION
    cpu_count: int
    memory_mb: int = msgspec.field(name="memoryMB")
    disk_size_mb: int = msgspec.field(name="diskSizeMB")
    state: State
    alias: str | None = None
    metadata: dict[str, str] = {}
    lifecycle: Lifecycle | None = None
    allow_internet_access: bool | None = None
    envd_access_token: str | None = None


class SandboxMetric(_Answer, kw_only=True):
    timestamp: datetime
    timestamp_unix: int
    cpu_count: int
    cpu_used_pct: float
    mem_used: int
    mem_total: int
    mem_cache: int
    disk_used: int
    disk_total: int


class SnapshotInfo(_Answer, kw_only=True):
    snapshot_id: str = msgspec.field(name="snapshotID")
    names: list[str]


class ApiError(msgspec.Struct, kw_only=True):
    """Every error answer's body (``code`` is the HTTP status)."""

    code: int
    message: str


def api_key_of(token: str) -> str:
    """A fleetd token in E2B's API key form."""
    return API_KEY_PREFIX + token.encode().hex()


def token_of(api_key: str) -> str:
    """The fleetd token an API key carries: E2B's form read back, any other key as it is."""
    if api_key.startswith(API_KEY_PREFIX):
        try:
            return bytes.fromhex(api_key[len(API_KEY_PREFIX) :]).decode()
        except (ValueError, UnicodeDecodeError):
            return api_key
    return api_key
