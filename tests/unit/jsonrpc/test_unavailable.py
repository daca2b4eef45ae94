"""A handler whose store or bus is failing over answers the retryable Unavailable (1501, with
``data.retryAfterMs``), not -32603: the gateway's dispatcher translates the exceptions of the
one failover table (``controlplane.failover``); anything else is still a bug, -32603."""

from __future__ import annotations

import json

import nats.errors
import nats.js.errors
import pytest
import redis.exceptions
from redis.asyncio.sentinel import MasterNotFoundError

from base.natsconn import StreamUnavailable
from contracts.errors import ERRORS, FleetError, InternalError, Unavailable, error_from_wire
from contracts.rpc.jsonrpc import Dispatcher, MethodSpec, NoParams, Router
from controlplane.failover import RETRY_AFTER_MS, unavailable
from tests.unit.jsonrpc.table import NameResult, call, request

FAILING_OVER: list[Exception] = [
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.BusyLoadingError("Valkey is loading the dataset in memory"),
    MasterNotFoundError("No master found for 'fleetd'"),
    nats.errors.TimeoutError(),
    nats.errors.NoRespondersError(),
    nats.errors.ConnectionClosedError(),
    nats.js.errors.ServiceUnavailableError(),
    StreamUnavailable("JetStream temporarily unavailable"),
]
BUGS: list[Exception] = [
    ValueError("x"),
    KeyError("y"),
    redis.exceptions.ResponseError("WRONGTYPE"),
    TimeoutError("not the bus's"),
]
RAISES = MethodSpec("raises", NoParams, NameResult, "Raises what the test says.")


def dispatcher_raising(exc: Exception, *, translate: bool = True) -> Dispatcher[None]:
    async def handler(_: NoParams, __: None) -> NameResult:
        raise exc

    router = Router[None]()
    router.register(RAISES, handler)
    return Dispatcher([RAISES], router, translate=unavailable if translate else None)


@pytest.mark.parametrize("exc", FAILING_OVER, ids=lambda e: type(e).__name__)
async def test_a_failover_is_answered_unavailable_with_a_wait(exc: Exception) -> None:
    errors: list[FleetError] = []
    d = dispatcher_raising(exc)
    body = await d.handle(json.dumps(request("raises", req_id=7)).encode(), None, errors)
    assert body is not None
    answer = json.loads(body)
    assert answer["id"] == 7
    assert answer["error"]["code"] == Unavailable.code == 1501
    assert answer["error"]["data"] == {"retryAfterMs": RETRY_AFTER_MS}
    assert "retry" in answer["error"]["message"]
    assert "127.0.0.1" not in answer["error"]["message"]  # the exception's text stays inside
    assert [type(e) for e in errors] == [Unavailable]


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: type(e).__name__)
async def test_anything_else_is_still_an_internal_error(exc: Exception) -> None:
    answer = await call(dispatcher_raising(exc), request("raises"), None)  # type: ignore[arg-type]
    assert answer["error"]["code"] == InternalError.code


async def test_without_the_translation_a_failover_is_an_internal_error() -> None:
    """What the gateway answered before (and the daemon's dispatcher still does)."""
    d = dispatcher_raising(redis.exceptions.ConnectionError("down"), translate=False)
    answer = await call(d, request("raises"), None)  # type: ignore[arg-type]
    assert answer["error"]["code"] == -32603


def test_the_code_is_in_the_table_and_comes_back_from_the_wire() -> None:
    assert ERRORS[1501] is Unavailable
    back = error_from_wire({"code": 1501, "message": "m", "data": {"retryAfterMs": 2500}})
    assert isinstance(back, Unavailable)
    assert back.retry_after_ms == 2500
    assert Unavailable.http_status == 503
