"""An instance's SSH public keys: what an SSH server in its machines accepts.

``instances.setSshKeys`` stores them and writes them to each running machine's
``~/.ssh/authorized_keys``; the setup pusher writes them to every new machine. Reach the SSH
server through a tunnel: ``ssh -o ProxyCommand='fleet machines tunnel %h 22'`` (docs/ports.md).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from contracts.errors import Forbidden, InvalidParams, NotFound
from contracts.gateway.types import InstanceId, RefreshFailure
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: Where a machine's authorized keys are written (mode 0600), under its home.
AUTHORIZED_KEYS = "~/.ssh/authorized_keys"
#: Key types an OpenSSH authorized_keys line may start with (no options before them: a
#: ``command=`` or ``from=`` prefix is not a key).
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                 "sk-ecdsa-sha2-nistp256@openssh.com")  # fmt: skip
_SSH_KEY = re.compile(r"(?P<type>\S+) (?P<blob>[A-Za-z0-9+/]+={0,2})( [^\r\n\0]*)?")
SshKey = Annotated[str, msgspec.Meta(min_length=1, max_length=16 * 1024)]


def check_ssh_key(key: str, field: str) -> None:
    m = _SSH_KEY.fullmatch(key)
    if m is None or m["type"] not in SSH_KEY_TYPES:
        types = ", ".join(SSH_KEY_TYPES)
        raise ValueError(f"field `{field}` must be one OpenSSH public key line, "
                         f"'<type> <base64> [comment]' with type one of {types}")  # fmt: skip


class SetSshKeysParams(Params, kw_only=True):
    instance_id: InstanceId
    #: Replaces the instance's keys; [] removes them all.
    keys: Annotated[list[SshKey], msgspec.Meta(max_length=64)]

    def __post_init__(self) -> None:
        for i, key in enumerate(self.keys):
            check_ssh_key(key, f"keys[{i}]")


class SshKeysResult(Result, kw_only=True):
    keys: list[str]
    #: Running machines of the instance the keys were pushed to, and those that failed.
    machines: int
    failed: list[RefreshFailure]


INSTANCES_SET_SSH_KEYS = MethodSpec(
    "instances.setSshKeys",
    SetSshKeysParams,
    SshKeysResult,
    f"Replace an instance's SSH public keys: its machines' {AUTHORIZED_KEYS}, written at setup "
    "and pushed now to its running machines.",
    (NotFound, Forbidden, InvalidParams),
    scope="env:write",
    client=ClientMethod("set_ssh_keys", "instance_id keys"),
)

SSH_METHODS: tuple[AnySpec, ...] = (INSTANCES_SET_SSH_KEYS,)


def authorized_keys(keys: list[str]) -> str:
    return "".join(k.strip() + "\n" for k in keys)
