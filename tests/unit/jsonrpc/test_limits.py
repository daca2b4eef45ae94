"""What one request body may cost the dispatcher: batch length, answer size, nesting depth.

An attacker's 1 MB batch of ``rpc.discover`` once built a 629 MB answer; a body nested deeper
than the interpreter's stack answered 500 with a traceback.
"""

from __future__ import annotations

import json

from contracts.rpc.jsonrpc import Dispatcher, Limits
from tests.unit.jsonrpc.table import (
    SPECS,
    WHOAMI,
    Ctx,
    call,
    notification,
    request,
    router as make_router,
)

TOO_LARGE = 1013


def dispatcher(**limits: int) -> Dispatcher[Ctx]:
    return Dispatcher(SPECS, make_router(), Limits(**limits))


async def test_a_batch_longer_than_the_limit_is_refused_whole_before_it_runs() -> None:
    ctx = Ctx()
    answer = await call(dispatcher(max_batch=3), [request(WHOAMI.name, req_id=i) for i in range(4)],
                        ctx)  # fmt: skip
    assert answer["error"]["code"] == -32600
    assert "at most 3" in answer["error"]["message"]
    assert answer["error"]["data"] == {"limit": 3}
    assert ctx.calls == []
    # at the limit, every request is answered
    ok = await call(dispatcher(max_batch=3), [request(WHOAMI.name, req_id=i) for i in range(3)],
                    ctx)  # fmt: skip
    assert [a["id"] for a in ok] == [0, 1, 2]


async def test_the_answer_to_a_batch_stops_growing_at_its_size_limit() -> None:
    ctx = Ctx()
    one = len(json.dumps({"jsonrpc": "2.0", "id": 0, "result": {"callerName": "tester"}}))
    batch = [request(WHOAMI.name, req_id=i) for i in range(50)] + [notification(WHOAMI.name)]
    raw = await dispatcher(max_response_bytes=one * 5).handle(json.dumps(batch).encode(), ctx)
    assert raw is not None
    assert len(raw) < one * 5 + 50 * 150  # the refusals are small, and there is one per id
    answers = json.loads(raw)
    assert len(answers) == 50  # every id answered, the notification not
    served = [a for a in answers if "result" in a]
    refused = [a for a in answers if "error" in a]
    assert 1 <= len(served) <= 5
    assert {a["error"]["code"] for a in refused} == {TOO_LARGE}
    assert refused[0]["error"]["data"] == {"limit": one * 5}
    assert len(ctx.calls) <= 6  # requests after the budget ran out were not run


async def test_a_single_answer_over_the_limit_is_an_error_for_its_id() -> None:
    answer = await call(dispatcher(max_response_bytes=10), request(WHOAMI.name, req_id="x"), Ctx())
    assert answer["id"] == "x"
    assert answer["error"]["code"] == TOO_LARGE


async def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    d = dispatcher()
    depth = 200_000
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"jsonrpc":"2.0","id":1,"method":"whoami","params":' + b"[" * depth + b"]" * depth + b"}",
        b"[" + b'{"a":' * depth + b"1" + b"}" * depth + b"]",
    ):
        answer = await call(d, body, Ctx())
        answer = answer[0] if isinstance(answer, list) else answer
        assert answer["error"]["code"] == -32700
        assert "nested too deeply" in answer["error"]["message"]
