"""Each stage declares its subscriptions next to its handlers; the names stay the deployed ones."""

from __future__ import annotations

import typing

import pytest

from contracts.consumers import Durable
from contracts.events import (
    DaemonStatusReported,
    EnvChanged,
    MachineArchived,
    MachineCreated,
    MachineProvisioned,
    ReposChanged,
    SetupPushed,
)
from services.common.settings import Settings
from services.common.subscriptions import declared_subscriptions, subscriber
from services.prober.service import Prober
from services.provisioner.service import Provisioner
from services.setup_pusher.service import SetupPusher

SERVICES = [Provisioner, SetupPusher, Prober]


def test_each_stage_declares_its_event_classes_on_the_deployed_durables() -> None:
    declared = {
        cls.__name__: {(name, d.event_type, d.durable.value) for name, d in
                       declared_subscriptions(cls)}
        for cls in SERVICES
    }  # fmt: skip
    assert declared == {
        "Provisioner": {
            ("on_created", MachineCreated, "provisioner"),
            ("on_archived", MachineArchived, "provisioner-archive"),
        },
        "SetupPusher": {
            ("on_status", DaemonStatusReported, "setup_pusher"),
            ("on_env_changed", EnvChanged, "setup_pusher-env"),
            ("on_repos_changed", ReposChanged, "setup_pusher-repos"),
        },
        "Prober": {
            ("on_setup_pushed", SetupPushed, "prober"),
            ("on_provisioned", MachineProvisioned, "prober-boot"),
        },
    }
    every = [d.durable for cls in SERVICES for _, d in declared_subscriptions(cls)]
    assert sorted(every) == sorted(Durable)  # each durable has exactly one handler


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
        Durable.SETUP_PUSHER: 90.0,
        Durable.PROBER: None,
        Durable.PROBER_BOOT: 150.0,
        Durable.SETUP_PUSHER_ENV: None,
        Durable.SETUP_PUSHER_REPOS: None,
    }
    give_up = {k: d.give_up.__name__ if d.give_up else None for k, d in by_durable.items()}
    assert give_up == {
        Durable.PROVISIONER: None,
        Durable.PROVISIONER_ARCHIVE: "stop_failed",
        Durable.SETUP_PUSHER: None,
        Durable.PROBER: None,
        Durable.PROBER_BOOT: "give_up_boot",
        Durable.SETUP_PUSHER_ENV: "log_give_up",
        Durable.SETUP_PUSHER_REPOS: "log_give_up",
    }


def test_an_override_without_a_declaration_drops_it() -> None:
    class Base:
        @subscriber(MachineCreated, durable=Durable.PROVISIONER)
        async def on_created(self, event: MachineCreated) -> None: ...

    class Quiet(Base):
        async def on_created(self, event: MachineCreated) -> None: ...

    assert [n for n, _ in declared_subscriptions(Base)] == ["on_created"]
    assert declared_subscriptions(Quiet) == []
