"""``@handles(spec)`` and ``Router.collect``: the marked methods of each owner, bound to it, are
its routes; a spec collected twice is refused as ``register`` refuses it."""

from __future__ import annotations

import pytest

from contracts.rpc.jsonrpc import MethodSpec, NoParams, Params, Result, Router, handles


class Echo(Params, kw_only=True):
    text: str


class Said(Result, kw_only=True):
    text: str
    by: str


ECHO: MethodSpec[Echo, Said] = MethodSpec("t.echo", Echo, Said, "echo")
WHO: MethodSpec[NoParams, Said] = MethodSpec("t.who", NoParams, Said, "who")


class Base:
    def __init__(self, name: str) -> None:
        self.name = name

    @handles(WHO)
    async def who(self, p: NoParams, c: None) -> Said:
        return Said(text="", by=self.name)


class Ops(Base):
    @handles(ECHO)
    async def echo(self, p: Echo, c: None) -> Said:
        return Said(text=p.text, by=self.name)

    async def not_a_handler(self, p: Echo, c: None) -> Said:
        return Said(text="", by="nobody")


async def test_marked_methods_are_collected_bound_to_their_owner_inherited_ones_too() -> None:
    r = Router[None]()
    r.collect(Ops("first"))
    assert sorted(r.routes) == ["t.echo", "t.who"]
    assert await r.routes["t.echo"].handler(Echo(text="hi"), None) == Said(text="hi", by="first")
    assert await r.routes["t.who"].handler(NoParams(), None) == Said(text="", by="first")
    assert r.routes["t.echo"].spec is ECHO


def test_a_spec_collected_from_two_owners_is_refused() -> None:
    r = Router[None]()
    r.collect(Ops("first"))
    with pytest.raises(ValueError, match=r"t\.(echo|who) is registered twice"):
        r.collect(Ops("second"))


class Louder(Ops):
    async def echo(self, p: Echo, c: None) -> Said:  # an override, not marked again
        return Said(text=p.text.upper(), by=self.name)


class Loudest(Ops):
    @handles(ECHO)
    async def echo(self, p: Echo, c: None) -> Said:  # an override, marked again
        return Said(text=p.text.upper() + "!", by=self.name)


async def test_an_override_handles_what_its_own_mark_says_and_nothing_unmarked() -> None:
    """The rule of every declared method (contracts/rpc/marks.py), as for a stage's subscriptions:
    the declaration is the method's as written."""
    r = Router[None]()
    r.collect(Louder("loud"))
    assert sorted(r.routes) == ["t.who"]
    r = Router[None]()
    r.collect(Loudest("loudest"))
    assert sorted(r.routes) == ["t.echo", "t.who"]
    said = await r.routes["t.echo"].handler(Echo(text="hi"), None)
    assert said == Said(text="HI!", by="loudest")
