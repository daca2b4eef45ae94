"""The user namespace of a ``local`` machine of an environment's image. One that acts as its
image's user (a devcontainer's ``remoteUser``) has that user's uid and gid *be* the machine's
own host uid (providers/sandbox/machine_uid.py), so ``id -u`` says the image's uid, ``whoami`` its
name, and a file the machine makes shows that user as its owner, while on the host everything
stays the machine's own uid, as for any sandboxed machine. Any other has its own uid mapped
onto itself. Either way the supervisor, the first process, starts in the namespace: the
image's root is the machine's to shape, and until the supervisor has become the user it can
become no other host uid (its CAP_SETUID and CAP_SETGID are the namespace's only).

The maps, written by the provider (root) while bwrap waits on ``--userns-block-fd``:

- ``0 0 1``: bwrap itself, root, sets the sandbox up inside the namespace (it must reach the
  host's root-owned paths it binds); the machine's first process, the supervisor, starts as
  that root with only CAP_SETUID and CAP_SETGID (as without a namespace) and becomes the user
  before anything of the machine runs (daemon/nodump.py). In the namespace it can become no
  one but root and the user: nothing else is mapped.
- ``UID HOST 1`` and ``GID HOST 1``: the user is the machine's own host uid (and group).

Every other host uid is unmapped: files the image gave another user, the user's own included
(on the host they belong to the image's uid number, not to this machine's), show as owned by
``nobody``. The syscall filter still refuses a nested namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The descriptor bwrap waits on until the namespace's maps are written.
USERNS_FD = 7


@dataclass(frozen=True)
class UserMap:
    #: The user's uid and gid in the image (never 0).
    uid: int
    gid: int
    #: The machine's own host uid (its group too).
    host: int

    def uid_map(self) -> str:
        return f"0 0 1\n{self.uid} {self.host} 1\n"

    def gid_map(self) -> str:
        return f"0 0 1\n{self.gid} {self.host} 1\n"


def bwrap_args() -> list[str]:
    """bwrap's: a user namespace whose maps the provider writes (``write_maps``)."""
    return ["--unshare-user", "--userns-block-fd", str(USERNS_FD)]


def write_maps(child_pid: int, user: UserMap) -> None:
    """The maps of the namespace bwrap's child (``child_pid``) made; by its pid's files, which
    only root (the provider) may write, once."""
    for name, text in (("uid_map", user.uid_map()), ("gid_map", user.gid_map())):
        with open(f"/proc/{child_pid}/{name}", "w") as f:
            f.write(text)
