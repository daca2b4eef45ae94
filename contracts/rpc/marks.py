"""Declarations written on methods, and the one way they are collected: a gateway's or a
daemon's JSON-RPC handler (``contracts.rpc.jsonrpc.handles``, collected by ``Router.collect``) and
a stage's event consumer (``controlplane.events.subscriptions.subscriber``, collected by
``declared_subscriptions``).

The rule for an overridden method: a declaration belongs to the method as written. A subclass's
override that is not marked again declares nothing, and the base class's declaration goes with
the method it replaced; marked again, it declares what its own mark says. So what a class
handles is read off the decorators of its own methods, where they are written; a dispatcher
whose table a handler went missing from refuses to start (``Dispatcher``), and a service whose
override drops a subscription consumes nothing for it, on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def mark(attr: str, value: object) -> Callable[[F], F]:
    """A decorator that declares ``value`` on the method it decorates, under ``attr``."""

    def declare(method: F) -> F:
        setattr(method, attr, value)
        return method

    return declare


def marked(cls: type, attr: str, kind: type[T]) -> list[tuple[str, T]]:
    """(method name, declaration) of every method of ``cls`` declared under ``attr`` with a
    ``kind``, by the rule above, in the order they are defined (base classes first)."""
    found: dict[str, T] = {}
    for c in reversed(cls.__mro__):
        for name, member in vars(c).items():
            declared = getattr(member, attr, None)
            if isinstance(declared, kind):
                found[name] = declared
            else:
                found.pop(name, None)  # overridden without a declaration: none
    return list(found.items())
