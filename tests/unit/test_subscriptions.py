"""Each stage declares its subscriptions next to its handlers; the names stay the deployed ones."""

from __future__ import annotations

import typing

import pytest

from contracts.bus.consumers import ORDERED, PER_HOST, Durable, durable_name, host_durable
from contracts.bus.events import (
    DaemonStatusReported,
    EnvChanged,
    MachineArchived,
    MachineCreated,
    MachinePauseRequested,
    MachineProvisioned,
    MachineResumeRequested,
    MachineSecretUsed,
    MachineStarted,
    MachineStopped,
    ReposChanged,
    SetupPushed,
)
from controlplane.events.subscriptions import consumers, declared_subscriptions, subscriber
from controlplane.settings import Settings
from services.gateway.auth import SecretUseAudit
from services.prober.boot_watch import BootWatchdog
from services.prober.placement import PlacementWatchdog
from services.prober.service import ReadinessProbe
from services.provisioner.create_archive import CreateArchive
from services.provisioner.pause import PauseResume
from services.provisioner.stop_start import StopStart
from services.setup_pusher.checkouts import Checkouts
from services.setup_pusher.live_env import LiveEnv
from services.setup_pusher.service import SetupPusher
from tests.fakes import FakeBus

SERVICES = [
    CreateArchive, StopStart, PauseResume, SetupPusher, LiveEnv, Checkouts, ReadinessProbe,
    BootWatchdog, PlacementWatchdog, SecretUseAudit,
]  # fmt: skip


def test_each_stage_declares_its_event_classes_on_the_deployed_durables() -> None:
    declared = {
        cls.__name__: {(name, d.event_type, d.durable.value) for name, d in
                       declared_subscriptions(cls)}
        for cls in SERVICES
    }  # fmt: skip
    assert declared == {
        "CreateArchive": {
            ("on_created", MachineCreated, "provisioner"),
            ("on_archived", MachineArchived, "provisioner-archive"),
        },
        "StopStart": {
            ("on_stopped", MachineStopped, "provisioner-stop"),
            ("on_started", MachineStarted, "provisioner-start"),
        },
        "PauseResume": {
            ("on_pause_requested", MachinePauseRequested, "provisioner-pause"),
            ("on_resume_requested", MachineResumeRequested, "provisioner-resume"),
        },
        "SetupPusher": {("on_status", DaemonStatusReported, "setup_pusher")},
        "LiveEnv": {("on_env_changed", EnvChanged, "setup_pusher-env")},
        "Checkouts": {("on_repos_changed", ReposChanged, "setup_pusher-repos")},
        "ReadinessProbe": {("on_setup_pushed", SetupPushed, "prober")},
        "BootWatchdog": {("on_provisioned", MachineProvisioned, "prober-boot")},
        "PlacementWatchdog": {("on_created", MachineCreated, "prober-placement")},
        "SecretUseAudit": {("on_secret_used", MachineSecretUsed, "gateway-audit")},
    }
    every = [d.durable for cls in SERVICES for _, d in declared_subscriptions(cls)]
    # Each durable has exactly one handler, but those read in order by a consumer of their own.
    assert sorted(every) == sorted(set(Durable) - ORDERED)


def test_per_machine_work_has_a_durable_per_host() -> None:
    assert {
        Durable.PROVISIONER_ARCHIVE, Durable.PROVISIONER_STOP, Durable.PROVISIONER_START,
        Durable.PROVISIONER_PAUSE, Durable.PROVISIONER_RESUME,
    } == PER_HOST  # fmt: skip
    assert durable_name(Durable.PROVISIONER_ARCHIVE, "host-1") == "provisioner-archive@host-1"
    assert durable_name(Durable.PROVISIONER, "host-1") == "provisioner"  # shared by all
    # What a durable name may not have: '.', '*', '>', slashes, white space.
    assert host_durable(Durable.PROVISIONER_STOP, "web.a b/c*>") == "provisioner-stop@web_a_b_c__"


def test_only_the_provisioners_creates_are_gated_by_room() -> None:
    gated = {d.durable for cls in SERVICES for _, d in declared_subscriptions(cls) if d.room}
    assert gated == {Durable.PROVISIONER}


@pytest.mark.parametrize("cls", SERVICES)
def test_a_handler_takes_the_class_it_declares(cls: type) -> None:
    for name, declared in declared_subscriptions(cls):
        hints = typing.get_type_hints(getattr(cls, name))
        assert hints["event"] is declared.event_type, name


def test_retry_budgets_and_give_ups_are_the_stages_own() -> None:
    settings = Settings(boot_timeout_s=90.0)
    by_durable = {d.durable: d for cls in SERVICES for _, d in declared_subscriptions(cls)}
    budget = {k: d.retry_budget(settings) if d.retry_budget else None
              for k, d in by_durable.items()}  # fmt: skip
    assert budget == {
        Durable.PROVISIONER: None,
        Durable.PROVISIONER_ARCHIVE: None,
        Durable.PROVISIONER_STOP: None,
        Durable.PROVISIONER_START: 90.0,
        Durable.PROVISIONER_PAUSE: None,
        Durable.PROVISIONER_RESUME: None,
        # Their waits bound themselves (each Retry says budget_s): the boot watchdog by the
        # platform's time (docs/pipeline.md#deadlines), a report by its machine's fate.
        Durable.SETUP_PUSHER: None,
        Durable.PROBER: None,
        Durable.PROBER_BOOT: None,
        Durable.PROBER_PLACEMENT: 3720.0,
        Durable.SETUP_PUSHER_ENV: None,
        Durable.SETUP_PUSHER_REPOS: None,
        Durable.GATEWAY_AUDIT: None,
    }
    give_up = {k: d.give_up.__name__ if d.give_up else None for k, d in by_durable.items()}
    assert give_up == {
        Durable.PROVISIONER: None,
        Durable.PROVISIONER_ARCHIVE: "stop_failed",
        Durable.PROVISIONER_STOP: "stop_event_failed",
        Durable.PROVISIONER_START: None,
        Durable.PROVISIONER_PAUSE: "pause_event_failed",
        Durable.PROVISIONER_RESUME: "resume_event_failed",
        Durable.SETUP_PUSHER: None,
        Durable.PROBER: None,
        Durable.PROBER_BOOT: "give_up_boot",
        Durable.PROBER_PLACEMENT: "give_up_placement",
        Durable.SETUP_PUSHER_ENV: "log_give_up",
        Durable.SETUP_PUSHER_REPOS: "log_give_up",
        Durable.GATEWAY_AUDIT: None,
    }


def test_an_override_without_a_declaration_drops_it() -> None:
    class Base:
        @subscriber(MachineCreated, durable=Durable.PROVISIONER)
        async def on_created(self, event: MachineCreated) -> None: ...

    class Quiet(Base):
        async def on_created(self, event: MachineCreated) -> None: ...

    assert [n for n, _ in declared_subscriptions(Base)] == ["on_created"]
    assert declared_subscriptions(Quiet) == []


def test_a_handler_group_without_a_give_up_names_one_for_each_declaration() -> None:
    class Named:
        async def failed(self, event: MachineCreated, reason: str) -> None: ...

        @subscriber(MachineCreated, durable=Durable.PROVISIONER, give_up=failed)
        async def on_created(self, event: MachineCreated) -> None: ...

    class Unnamed:
        @subscriber(MachineCreated, durable=Durable.PROVISIONER)
        async def on_created(self, event: MachineCreated) -> None: ...

    settings = Settings()
    assert len(consumers(Named(), FakeBus(settings), settings)) == 1
    with pytest.raises(ValueError, match=r"Unnamed\.on_created names no give_up"):
        consumers(Unnamed(), FakeBus(settings), settings)
