"""Machine status values and the transitions between them.

Status changes are compare-and-set: a stage moves a machine to ``target`` only when its current
status is in ``ADVANCE_FROM[target]``. Each target but ``created`` admits itself, so a
redelivered event can finish its work, but a late or repeated event never moves a machine
backwards. This table is the one truth: the store's Lua script is generated from it
(``controlplane.store.scripts``), and ``can_advance`` reads it.
"""

from __future__ import annotations

from enum import StrEnum


class MachineStatus(StrEnum):
    CREATED = "created"
    PROVISIONING = "provisioning"
    BOOTING = "booting"
    SETTING_UP = "setting-up"
    PROBING = "probing"
    READY = "ready"
    FAILED = "failed"
    UNRESPONSIVE = "unresponsive"
    #: Archived on request (``machines.archive``, a rebuild): its processes are being ended and
    #: its files removed. ``archived`` once they are gone; nothing else moves it from here.
    ARCHIVING = "archiving"
    #: Archived: every process has exited and its files (home, code, secrets) are gone.
    ARCHIVED = "archived"
    #: Asked to stop (``machines.stop``, or auto-stop when idle): its processes are being ended.
    #: ``stopped`` once every one of them has exited. Its daemon is not called any more.
    STOPPING = "stopping"
    #: Stopped on purpose: no process, container or memory (every process of the machine has
    #: exited); only its home stays. ``machines.start`` brings the same machine back.
    STOPPED = "stopped"
    #: Unresponsive, and its host is lost too (no host heartbeat for
    #: ``FLEET_HOST_LOST_AFTER_S``). Ready again if its heartbeats resume (its host came back);
    #: ``machines.rebuild`` replaces it with a machine on a live host.
    LOST = "lost"
    #: Asked to pause (``machines.pause``, a gvisor machine): its memory and processes are
    #: being written to disk. ``paused`` once its sandbox is gone; ``ready`` again if the pause
    #: was refused before the sandbox was touched.
    PAUSING = "pausing"
    #: Paused: its memory, processes and filesystem changes are on disk, its sandbox is gone
    #: and holds no host memory. ``machines.resume`` brings it back as it was.
    PAUSED = "paused"
    #: Asked to resume: its sandbox is being restored from its pause; ``ready`` once it is.
    RESUMING = "resuming"


S = MachineStatus

#: Where a machine may be stopped from: any status in which it has (or is getting) a daemon,
#: whose processes a provisioner that starts again resumes watching.
STOPPABLE: frozenset[MachineStatus] = frozenset(
    {S.BOOTING, S.SETTING_UP, S.PROBING, S.READY, S.UNRESPONSIVE, S.LOST}
)

#: Not yet started by a provider: created, or being provisioned.
NOT_PROVISIONED: frozenset[MachineStatus] = frozenset({S.CREATED, S.PROVISIONING})

#: On its way up after a create or a start: its daemon boots, is set up, is probed.
COMING_UP: frozenset[MachineStatus] = frozenset({S.BOOTING, S.SETTING_UP, S.PROBING})

#: Its daemon runs (or was heard from lately) and takes a push: env, cron, SSH keys, code.
REFRESHABLE: frozenset[MachineStatus] = frozenset({S.READY, S.UNRESPONSIVE, S.PROBING})

#: Set up, and running (or to be heard from again): a new daemon's report of one of them
#: writes its .env again.
SET_UP: frozenset[MachineStatus] = frozenset({S.READY, S.UNRESPONSIVE, S.LOST})

#: Running, or on its way up: what an instance's egress policy is applied to at once.
UP_OR_COMING_UP: frozenset[MachineStatus] = COMING_UP | {S.READY, S.UNRESPONSIVE}

#: Where a pause is accepted: ready, or pausing or paused already (nothing more to do).
PAUSABLE: frozenset[MachineStatus] = frozenset({S.READY, S.PAUSING, S.PAUSED})

#: Ready, or on its way back from a pause: a resume has nothing to do.
RESUMED_OR_RESUMING: frozenset[MachineStatus] = frozenset({S.READY, S.RESUMING})

#: A machine stopped on purpose, or on its way there: its daemon is not called, its heartbeats
#: are not expected, ``machines.start`` brings it back.
STOPPED_OR_STOPPING: frozenset[MachineStatus] = frozenset({S.STOPPING, S.STOPPED})

#: What ``machines.start`` starts: a stopped machine (or one stopping), and a failed one its
#: provider made (``externalId`` set: it has a home to start in; one never made is rebuilt).
STARTABLE: frozenset[MachineStatus] = STOPPED_OR_STOPPING | {S.FAILED}

#: A machine paused, or on its way into or out of a pause: its daemon is not called, its
#: heartbeats are not expected.
PAUSE_STATES: frozenset[MachineStatus] = frozenset({S.PAUSING, S.PAUSED, S.RESUMING})

#: Statuses a machine never leaves by itself: failed (a ``machines.start`` brings back one
#: whose provider made it, as a stopped one), archiving and archived (nothing moves it back).
TERMINAL: frozenset[MachineStatus] = frozenset({S.FAILED, S.ARCHIVING, S.ARCHIVED})

#: Archived, or on its way there: it is not reached into again, and holds no place on its host.
ARCHIVED_OR_ARCHIVING: frozenset[MachineStatus] = frozenset({S.ARCHIVING, S.ARCHIVED})

#: Paused or stopped, or on its way into or out of either: a wake on access has work to do.
ASLEEP: frozenset[MachineStatus] = PAUSE_STATES | STOPPED_OR_STOPPING

#: What one start or one resume wakes a machine from: paused, or stopped (or stopping), or
#: failed (``machines.start`` only: what is left of it is stopped first, then it is started).
WAKEABLE: tuple[frozenset[MachineStatus], ...] = (
    frozenset({S.PAUSED}),
    STOPPED_OR_STOPPING,
    frozenset({S.FAILED}),
)

#: A machine that does not run: it does not count against its instance's running limit.
NOT_RUNNING: frozenset[MachineStatus] = TERMINAL | STOPPED_OR_STOPPING | {S.PAUSED}

#: Where a wait for a machine to be ready ends: ready, or it never will be.
READY_OR_NEVER: frozenset[MachineStatus] = frozenset({S.READY, S.FAILED}) | ARCHIVED_OR_ARCHIVING

#: Where a wait for a start (or a resume) ends: ready or failed, or overtaken by a stop or an
#: archive.
START_ENDS: frozenset[MachineStatus] = READY_OR_NEVER | {S.STOPPED}

#: Where a wait for a stop ends: stopped, or overtaken by a start, or by an archive.
STOP_ENDS: frozenset[MachineStatus] = frozenset({S.STOPPED, S.BOOTING}) | ARCHIVED_OR_ARCHIVING

#: Where a wait for a pause ends: paused, ready again (refused: its reason says why), or as a
#: start's wait ends.
PAUSE_ENDS: frozenset[MachineStatus] = START_ENDS | {S.PAUSED}

_LIVE = frozenset(
    {S.CREATED, S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.READY, S.UNRESPONSIVE,
     S.LOST, S.PAUSING, S.PAUSED, S.RESUMING}
)  # fmt: skip

ADVANCE_FROM: dict[MachineStatus, frozenset[MachineStatus]] = {
    S.CREATED: frozenset(),
    S.PROVISIONING: frozenset({S.CREATED, S.PROVISIONING}),
    # A start moves a stopped machine straight to booting: never through provisioning, whose
    # handler would take a fresh machine from the warm pool (another home).
    # A start may overtake a stop still under way (the provisioner ends the old processes
    # before it starts the machine again). A machine whose daemon went away during its setup
    # (the platform stopped, and its provisioner started the daemon anew) is set up again.
    S.BOOTING: frozenset(
        {S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.STOPPING, S.STOPPED}
    ),
    S.SETTING_UP: frozenset({S.BOOTING, S.SETTING_UP}),
    S.PROBING: frozenset({S.SETTING_UP, S.PROBING}),
    # A resume once restored; a pause refused before its sandbox was touched.
    S.READY: frozenset({S.PROBING, S.READY, S.UNRESPONSIVE, S.LOST, S.RESUMING, S.PAUSING}),
    # Also a resumed machine whose daemon does not answer: ready at its first heartbeat.
    S.UNRESPONSIVE: frozenset({S.READY, S.UNRESPONSIVE, S.RESUMING}),
    # Only a machine whose own heartbeats stopped: one that still beats is reachable, whatever
    # its host's provisioner does; one still setting up fails by its stage.
    S.LOST: frozenset({S.UNRESPONSIVE, S.LOST}),
    S.FAILED: _LIVE | {S.FAILED},
    # A paused machine too: its memory image is deleted. A failed one on its way to a start:
    # what is left of it (a daemon that reported too late, a sandbox) is ended first.
    S.STOPPING: STOPPABLE | {S.STOPPING, S.PAUSED, S.FAILED},
    # Only by the provisioner, once every process of the machine has exited.
    S.STOPPED: frozenset({S.STOPPING, S.STOPPED}),
    S.PAUSING: frozenset({S.READY, S.PAUSING}),
    # Only by the provisioner, once the sandbox is checkpointed and gone.
    S.PAUSED: frozenset({S.PAUSING, S.PAUSED}),
    S.RESUMING: frozenset({S.PAUSED, S.RESUMING}),
    S.ARCHIVING: _LIVE | {S.FAILED, S.ARCHIVING, S.STOPPING, S.STOPPED},
    # Only by the provisioner of the machine's host, once its files are gone.
    S.ARCHIVED: frozenset({S.ARCHIVING, S.ARCHIVED}),
}


def can_advance(current: MachineStatus, target: MachineStatus) -> bool:
    return current in ADVANCE_FROM[target]


class HostState(StrEnum):
    """A host's state in ``hosts.list`` (contracts/gateway/hosts.py)."""

    #: Heartbeating; takes new machines while it has room.
    ACTIVE = "active"
    #: Heartbeating, but takes no new machines (hosts.drain).
    DRAINING = "draining"
    #: No heartbeat for ``FLEET_HOST_LOST_AFTER_S``.
    LOST = "lost"
