"""Declared subscriptions: a stage handler names, next to its code, what it consumes.

    @subscriber(DaemonStatusReported, durable=Durable.SETUP_PUSHER, retry_budget=boot_budget)
    async def on_status(self, event: DaemonStatusReported) -> None: ...

The event class gives the kind (``machine.<kind>.*``, from ``contracts.bus.events``), the durable
name comes from ``contracts.bus.consumers``. A service's ``__main__`` then enters one consumer per
declaration of each of its handler groups with ``enter_subscriptions``; the handler receives
only events of its class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import MethodType
from typing import Any, Generic

from contracts.bus.consumers import Durable, durable_name
from contracts.rpc.marks import mark, marked
from controlplane.bus import Bus
from controlplane.events.consumer import Consumer, E, stage_consumer
from controlplane.process.metrics import Metrics
from controlplane.settings import Settings

#: A handler as written in its class: an async method taking one event of its class.
HandlerMethod = Callable[[Any, E], Awaitable[None]]
#: A method that records a failure once the consumer gives up on an event.
GiveUpMethod = Callable[[Any, E, str], Awaitable[None]]
#: A method saying how many more events the service may take (``consumer_room.Room``).
RoomMethod = Callable[[Any, frozenset[str]], Awaitable[int | None]]
#: How long a handler may defer an event that came too early (``Retry``), from the settings.
RetryBudget = Callable[[Settings], float]

_ATTR = "__fleet_subscription__"


#: A handler group: any object with declared handlers. A declaration that names no give-up
#: takes the group's own ``give_up`` (a method, or one it was handed as it was made), which
#: ``consumers`` requires then: a type cannot say "only where a declaration names none".
Handlers = object


@dataclass(frozen=True)
class Subscription(Generic[E]):
    """One declaration: a consumer ``durable`` feeding events of ``event_type`` to a handler."""

    event_type: type[E]
    durable: Durable
    #: None: the consumer's default (a few ack waits).
    retry_budget: RetryBudget | None = None
    #: None: the service's ``give_up``.
    give_up: GiveUpMethod[E] | None = None
    #: None: no capacity gate; else the consumer fetches only while this says there is room.
    room: RoomMethod | None = None


def subscriber(
    event_type: type[E],
    *,
    durable: Durable,
    retry_budget: RetryBudget | None = None,
    give_up: GiveUpMethod[E] | None = None,
    room: RoomMethod | None = None,
) -> Callable[[HandlerMethod[E]], HandlerMethod[E]]:
    """Declare the decorated method the handler of ``event_type`` events on ``durable`` (a
    durable of ``contracts.bus.consumers.PER_HOST``: this host's of that name)."""
    return mark(_ATTR, Subscription(event_type, durable, retry_budget, give_up, room))


def declared_subscriptions(service_class: type) -> list[tuple[str, Subscription[Any]]]:
    """(method name, declaration) of every declared handler of ``service_class``, in the order
    they are defined (base classes first); an override that is not declared again consumes
    nothing (``contracts.rpc.marks``)."""
    return marked(service_class, _ATTR, Subscription)


def consumers(
    service: Handlers, bus: Bus, settings: Settings, metrics: Metrics | None = None
) -> list[Consumer[Any]]:
    """One stage consumer per declared subscription of ``service``, not yet started."""
    declarations = declared_subscriptions(type(service))
    if len({d.durable for _, d in declarations}) != len(declarations):
        # Two handlers on one durable consumer would each see only some of the events.
        raise ValueError(f"{type(service).__name__} declares one durable name twice")
    out: list[Consumer[Any]] = []
    for name, declared in declarations:
        handler = getattr(service, name)
        give_up = getattr(service, "give_up", None)
        if declared.give_up is not None:
            give_up = MethodType(declared.give_up, service)
        if give_up is None:
            raise ValueError(f"{type(service).__name__}.{name} names no give_up, and "
                             f"{type(service).__name__} has none")  # fmt: skip
        budget = declared.retry_budget
        room = MethodType(declared.room, service) if declared.room is not None else None
        out.append(
            stage_consumer(
                bus,
                settings,
                durable=durable_name(declared.durable, settings.host_id),
                stage=declared.durable,
                event_type=declared.event_type,
                handler=handler,
                give_up=give_up,
                retry_budget_s=budget(settings) if budget is not None else None,
                metrics=metrics,
                room=room,
            )
        )
    return out


async def enter_subscriptions(
    stack: AsyncExitStack,
    groups: Sequence[Handlers],
    bus: Bus,
    settings: Settings,
    metrics: Metrics | None = None,
) -> None:
    """Start a consumer per declared subscription of each handler group of ``groups`` (no
    durable name twice among them); ``stack`` stops them."""
    durables = [d.durable for g in groups for _, d in declared_subscriptions(type(g))]
    if len(set(durables)) != len(durables):
        raise ValueError(f"one durable name is declared twice among {groups!r}")
    for group in groups:
        for consumer in consumers(group, bus, settings, metrics):
            await stack.enter_async_context(consumer)
