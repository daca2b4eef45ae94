"""The user namespace of a ``local`` machine of an environment's image. One that acts as its
image's user (a devcontainer's ``remoteUser``) has that user's uid and gid *be* the machine's
own host uid (providers/sandbox/machine_uid.py), so ``id -u`` says the image's uid, ``whoami`` its
name, and a file the machine makes shows that user as its owner, while on the host everything
stays the machine's own uid, as for any sandboxed machine. Any other has its own uid mapped
onto itself. Either way the supervisor, the first process, starts in the namespace: the
image's root is the machine's to shape, and until the supervisor has become the user it can
become no other host uid (its CAP_SETUID and CAP_SETGID are the namespace's only).

The namespace is made before bwrap starts, by a process of the machine's own host uid (``owned``),
whose it then is, and bwrap joins it (``--userns``): the kernel charges what a namespace's
processes hold (inotify instances and watches, counted per uid) to its owner's uid as well as to
their own, and a namespace bwrap made as root was root's, so one machine's 128
``inotify_init1`` left the host's root, and every other image machine, none. Its maps, written
by the provider (root):

- ``0 0 1``: bwrap itself, root, sets the sandbox up inside the namespace (it must reach the
  host's root-owned paths it binds); the machine's first process, the supervisor, starts as
  that root with only CAP_SETUID and CAP_SETGID (as without a namespace) and becomes the user
  before anything of the machine runs (daemon/supervision/nodump.py). In the namespace it can
  become no
  one but root and the user: nothing else is mapped.
- ``UID HOST 1`` and ``GID HOST 1``: the user is the machine's own host uid (and group).

Every other host uid is unmapped: files the image gave another user, the user's own included
(on the host they belong to the image's uid number, not to this machine's), show as owned by
``nobody``. The syscall filter still refuses a nested namespace. The owner, the machine's host
uid, would have every capability in the namespace from the host's side: no code of the machine
runs outside it (each machine's uid is its own, and all its processes are inside; what the
platform runs as that uid on the host, a plain copy of its home, runs nothing of the machine's).
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.sandbox.idmap import user_namespace

#: The descriptor bwrap joins the namespace by.
USERNS_FD = 7


@dataclass(frozen=True)
class UserMap:
    #: The user's uid and gid in the image (never 0).
    uid: int
    gid: int
    #: The machine's own host uid (its group too).
    host: int

    def maps(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The namespace's (inside, host) pairs: uids, gids."""
        return [(0, 0), (self.uid, self.host)], [(0, 0), (self.gid, self.host)]


def bwrap_args() -> list[str]:
    """bwrap's: join the namespace ``owned`` made, at ``USERNS_FD``."""
    return ["--userns", str(USERNS_FD)]


def owned(user: UserMap) -> int:
    """The machine's user namespace, made by a process of its host uid (the owner) and mapped;
    a descriptor of it, which keeps it while bwrap has not joined it yet."""
    holder, fd = user_namespace(*user.maps(), owner=user.host)
    holder.kill()
    holder.wait()
    return fd
