"""The one-pass decode (contracts/rpc_params.OnePass) is only a shortcut: for every body, the
dispatcher answers exactly as its general path does (three decodes: envelope, then params), and
it takes the shortcut only for plainly valid single requests."""

from __future__ import annotations

import pytest

from contracts.errors import NotFound
from contracts.jsonrpc import Dispatcher, MethodSpec, Params, Router
from contracts.rpc_params import OnePass
from tests.unit.jsonrpc.table import SPECS, Ctx, router

#: Bodies the shortcut takes: valid single requests and notifications.
PLAIN = [
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":"a","mode":7}}',
    b'{"params":{"path":"a"},"id":"x","method":"files.echo","jsonrpc":"2.0"}',  # method after
    b'{"jsonrpc":"2.0","method":"files.echo","params":{"path":"n"}}',  # a notification
    b'{"jsonrpc":"2.0","id":null,"method":"whoami","params":{}}',
    b'{"jsonrpc":"2.0","id":3,"method":"whoami","params":{},"extra":[1,{"a":2}]}',
    b'{"jsonrpc":"2.0","id":4,"method":"nested","params":{"inner":{"deepValue":5}}}',
    b'{"jsonrpc":"2.0","id":5,"method":"files.find","params":{"path":"p"}}',  # NotFound
    b'{"jsonrpc":"2.0","id":6,"method":"crash","params":{}}',  # -32603
    b'{"jsonrpc":"1.0","id":7,"method":"whoami","params":{}}',  # decoded; refused after
    b'{"jsonrpc":"2.0","id":8,"method":"files.echo","params":{"path":"a"},"params":{"path":"b"}}',
    b'  {"jsonrpc":"2.0","id":9,"method":"whoami","params":{}}  ',
]
#: Bodies it leaves to the general path, which answers each as before.
ODD = [
    b'{"jsonrpc":"2.0","id":1,"method":"whoami"}',  # no params: {} by default
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":[]}',  # [] is "no params" too
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":["a"]}',  # by position: -32602
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":null}',
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{}}',  # missing field
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":"a","evil":1}}',
    b'{"jsonrpc":"2.0","id":1,"method":"files.echo","params":{"path":1}}',
    b'{"jsonrpc":"2.0","id":1,"method":"nested","params":{"inner":{"deepValue":"x"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"no.such","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"\\u0000never","params":{}}',  # the union's filler
    b'{"jsonrpc":"2.0","id":1,"method":5,"params":{}}',
    b'{"jsonrpc":"2.0","id":1,"params":{}}',  # no method
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","method":"crash","params":{}}',  # last wins
    b'{"jsonrpc":"2.0","id":1,"method":"crash","method":"whoami","params":{}}',
    b'{"id":1,"method":"whoami","params":{}}',  # no jsonrpc
    b'{"jsonrpc":"2.0","id":[1],"method":"whoami","params":{}}',
    b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":{}',  # not JSON
    b'[{"jsonrpc":"2.0","id":1,"method":"whoami","params":{}}]',  # a batch
    b"[]",
    b'"whoami"',
    b"",
    b"[" * 100_000,  # too deep
]


def general_path() -> Dispatcher[Ctx]:
    d = Dispatcher(SPECS, router())
    d._one_pass = OnePass({})  # never decodes: every body takes the general path
    return d


@pytest.mark.parametrize("body", PLAIN + ODD)
async def test_the_answer_is_the_general_paths(body: bytes) -> None:
    fast, slow = Dispatcher(SPECS, router()), general_path()
    fast_ctx, slow_ctx = Ctx(), Ctx()
    assert await fast.handle(body, fast_ctx) == await slow.handle(body, slow_ctx)
    assert fast_ctx.calls == slow_ctx.calls  # the same handler ran, with the same params


@pytest.mark.parametrize("body", PLAIN)
def test_plain_requests_take_the_shortcut(body: bytes) -> None:
    assert Dispatcher(SPECS, router()).prepare(body.strip()) is not None


@pytest.mark.parametrize("body", ODD)
def test_anything_else_does_not(body: bytes) -> None:
    assert Dispatcher(SPECS, router()).prepare(body) is None


async def test_run_answers_as_handle() -> None:
    d = Dispatcher(SPECS, router())
    for body in PLAIN:
        call = d.prepare(body.strip())
        assert call is not None
        assert await d.run(call, Ctx()) == await d.handle(body, Ctx())


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
async def test_a_params_check_that_raises_is_answered_as_before(kind: str) -> None:
    """Not only ValueError (msgspec's ValidationError): whatever a check raises is answered by
    the general path, inside the handler's boundary (-32603 for a bug), not raised out."""
    spec = MethodSpec("checked", _Checked, dict[str, bool], "A params check.")
    router = Router[Ctx]()
    router.register(spec, _checked)
    fast = Dispatcher([spec], router)
    slow = Dispatcher([spec], router)
    slow._one_pass = OnePass({})
    body = b'{"jsonrpc":"2.0","id":1,"method":"checked","params":{"kind":"%s"}}' % kind.encode()
    answer = await fast.handle(body, Ctx())
    assert answer is not None
    assert answer == await slow.handle(body, Ctx())
    assert (fast.prepare(body) is not None) == (kind == "fine")
    assert b'"error"' in answer if kind != "fine" else b'"result"' in answer
