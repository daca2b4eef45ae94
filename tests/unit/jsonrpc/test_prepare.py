"""``prepare`` then ``run``, the daemon's way (it looks at a request's method before it decides
whether to answer at once or in a task of its own), answers every body as ``handle`` does;
``prepare`` leaves to ``handle`` only what is not a single request's envelope."""

from __future__ import annotations

import pytest

from contracts.errors import NotFound
from contracts.rpc.jsonrpc import Dispatcher, MethodSpec, Params, Router
from tests.unit.jsonrpc.table import SPECS, Ctx, router

#: Single requests' envelopes: ``run`` answers them, errors included, as ``handle`` does.
ENVELOPES = [
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":"a","mode":7}}',
    b'{"params":{"path":"a"},"id":"x","method":"files.echo","jsonrpc":"2.0"}',  # method after
    b'{"jsonrpc":"2.0","method":"files.echo","params":{"path":"n"}}',  # a notification
    b'{"jsonrpc":"2.0","id":null,"method":"whoami","params":{}}',
    b'{"jsonrpc":"2.0","id":3,"method":"whoami","params":{},"extra":[1,{"a":2}]}',
    b'{"jsonrpc":"2.0","id":4,"method":"nested","params":{"inner":{"deepValue":5}}}',
    b'{"jsonrpc":"2.0","id":5,"method":"files.find","params":{"path":"p"}}',  # NotFound
    b'{"jsonrpc":"2.0","id":6,"method":"crash","params":{}}',  # -32603
    b'{"jsonrpc":"1.0","id":7,"method":"whoami","params":{}}',  # refused: not 2.0
    b'{"jsonrpc":"2.0","id":8,"method":"files.echo","params":{"path":"a"},"params":{"path":"b"}}',
    b'  {"jsonrpc":"2.0","id":9,"method":"whoami","params":{}}  ',
    b'{"jsonrpc":"2.0","id":1,"method":"whoami"}',  # no params: {} by default
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":[]}',  # [] is "no params" too
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":["a"]}',  # by position: -32602
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{}}',  # missing field
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":"a","evil":1}}',
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":1}}',
    b'{"jsonrpc":"2.0","id":1,"method":"nested","params":{"inner":{"deepValue":"x"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"no.such","params":{}}',  # -32601
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","method":"crash","params":{}}',  # last wins
]
#: Not a single request's envelope: ``handle`` answers them (a batch, a parse error, ...).
OTHERS = [
    b'{"jsonrpc":"2.0","id":1,"method":5,"params":{}}',
    b'{"jsonrpc":"2.0","id":1,"params":{}}',  # no method
    b'{"id":1,"method":"whoami","params":{}}',  # no jsonrpc
    b'{"jsonrpc":"2.0","id":[1],"method":"whoami","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":{}',  # not JSON
    b'[{"jsonrpc":"2.0","id":1,"method":"whoami","params":{}}]',  # a batch
    b"[]",
    b'"whoami"',
    b"",
    b"[" * 100_000,  # too deep
    b"{" * 100_000,
]


@pytest.mark.parametrize("body", ENVELOPES)
async def test_run_answers_an_envelope_as_handle_does(body: bytes) -> None:
    d = Dispatcher(SPECS, router())
    call = d.prepare(body)
    assert call is not None
    ran, handled = Ctx(), Ctx()
    assert await d.run(call, ran) == await d.handle(body, handled)
    assert ran.calls == handled.calls  # the same handler ran, with the same params


@pytest.mark.parametrize("body", OTHERS)
async def test_anything_else_is_left_to_handle(body: bytes) -> None:
    d = Dispatcher(SPECS, router())
    assert d.prepare(body) is None
    assert await d.handle(body, Ctx()) is not None  # answered there, with an error


class _Checked(Params, kw_only=True):
    kind: str

    def __post_init__(self) -> None:
        if self.kind == "fleet":
            raise NotFound("no such kind")  # a FleetError from a params check
        if self.kind == "bug":
            raise RuntimeError("a bug in a params check")


async def _checked(_: _Checked, __: Ctx) -> dict[str, bool]:
    return {"ok": True}


@pytest.mark.parametrize("kind", ["fine", "fleet", "bug"])
async def test_a_params_check_that_raises_is_answered_not_raised(kind: str) -> None:
    """Whatever a params check raises, not only msgspec's ValidationError, is answered inside
    the handler's boundary (-32603 for a bug), by ``run`` as by ``handle``."""
    spec = MethodSpec("checked", _Checked, dict[str, bool], "A params check.")
    checked = Router[Ctx]()
    checked.register(spec, _checked)
    d = Dispatcher([spec], checked)
    body = b'{"jsonrpc":"2.0","id":1,"method":"checked","params":{"kind":"%s"}}' % kind.encode()
    call = d.prepare(body)
    assert call is not None
    answer = await d.run(call, Ctx())
    assert answer is not None
    assert answer == await d.handle(body, Ctx())
    assert b'"error"' in answer if kind != "fine" else b'"result"' in answer
