"""Stopping and starting machines (gateway_rpc.py is full): ``machines.stop``,
``machines.start`` and an instance's auto-stop.

A stopped machine holds no process, container or memory; only its home stays. ``start`` brings
the same machine back (same id, same home) and the pipeline runs again from its daemon's ready
report, as after a create. Every method that needs the daemon answers ``MachineStopped`` at
once on a stopped machine.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.errors import (
    Conflict,
    Forbidden,
    HostFull,
    NeverStarted,
    NotFound,
    NotSupported,
    RunningMachinesLimit,
    Unavailable,
)
from contracts.gateway.types import InstanceId, InstanceRef, MachineRef
from contracts.models import Machine
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

#: At most a week: past that, stop the machine by hand.
IdleAfterS = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 3600)]
#: What auto-stop does to an idle machine. A namespaces machine cannot keep its memory: it is
#: stopped whatever the action says.
AutoStopAction = Literal["pause", "stop"]


class SetAutoStopParams(Params, kw_only=True):
    instance_id: InstanceId
    #: Stop the instance's machines after this many seconds without gateway activity; 0: never.
    idle_after_s: IdleAfterS
    #: ``pause`` or ``stop``; None: pause a gvisor machine, stop a namespaces one.
    action: AutoStopAction | None = None


class AutoStop(Result, kw_only=True):
    instance_id: str
    idle_after_s: int
    #: As set; None: the default (pause a gvisor machine, stop a namespaces one).
    action: AutoStopAction | None = None


MACHINES_STOP: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.stop",
    MachineRef,
    Machine,
    "Stop a machine: its processes end, its home stays (a stopped one: no change).",
    (NotFound, Forbidden, Conflict),
    scope="machines:exec",
    client=ClientMethod("stop_machine", "machine_id"),
)
MACHINES_START: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.start",
    MachineRef,
    Machine,
    "Start a stopped machine again: the same machine, its home and background processes "
    "(a running one: no change). A failed one too: what is left of it is ended, then it is "
    "started; NeverStarted if its provider never made it (rebuild it). Conflict once archived. "
    "Refused with HostFull while its host has no room; Unavailable (retry) while other starts "
    "on its host hold its place for over 5 s.",
    (NotFound, Forbidden, Conflict, NeverStarted, RunningMachinesLimit, HostFull, Unavailable),
    scope="machines:exec",
    client=ClientMethod("start_machine", "machine_id"),
)
MACHINES_PAUSE: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.pause",
    MachineRef,
    Machine,
    "Pause a ready gvisor machine: its memory, processes and filesystem changes go to disk, "
    "its sandbox ends and its host memory is freed (status pausing, then paused; a paused "
    "one: no change). NotSupported on a namespaces machine; Conflict unless it is ready.",
    (NotFound, Forbidden, Conflict, NotSupported),
    scope="machines:exec",
    budget="pause",
    client=ClientMethod("pause_machine", "machine_id"),
)
MACHINES_RESUME: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.resume",
    MachineRef,
    Machine,
    "Resume a paused machine: its processes go on where they were, with the same PIDs "
    "(status resuming, then ready; a ready one: no change). Conflict unless it is paused; "
    "refused as machines.start is (RunningMachinesLimit, HostFull), and it stays paused.",
    (NotFound, Forbidden, Conflict, RunningMachinesLimit, HostFull, Unavailable),
    scope="machines:exec",
    budget="pause",
    client=ClientMethod("resume_machine", "machine_id"),
)
INSTANCES_SET_AUTOSTOP: MethodSpec[SetAutoStopParams, AutoStop] = MethodSpec(
    "instances.setAutoStop",
    SetAutoStopParams,
    AutoStop,
    "Stop or pause the instance's machines after idleAfterS seconds without gateway activity "
    "(0: off). action: pause or stop; absent, a gvisor machine is paused and a namespaces one "
    "stopped. A namespaces machine is always stopped: it cannot keep its memory.",
    (NotFound, Forbidden),
    scope="admin",
    client=ClientMethod("set_autostop", "instance_id idle_after_s action"),
)
INSTANCES_GET_AUTOSTOP: MethodSpec[InstanceRef, AutoStop] = MethodSpec(
    "instances.getAutoStop",
    InstanceRef,
    AutoStop,
    "The instance's auto-stop setting (0: off).",
    (NotFound, Forbidden),
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_autostop", "instance_id"),
)

STOP_METHODS: tuple[AnySpec, ...] = (
    MACHINES_STOP,
    MACHINES_START,
    MACHINES_PAUSE,
    MACHINES_RESUME,
    INSTANCES_SET_AUTOSTOP,
    INSTANCES_GET_AUTOSTOP,
)
