"""The one error table (contracts/errors.py): every kind is in it once, with its own code and an
HTTP status, and an answer made from it (services/gateway/errors_http.py) comes back as the same
error on the client side (error_from_http), from its body or from its header alone."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from contracts import errors as e
from contracts.errors import BY_STATUS, ERROR_HEADER, ERRORS, FleetError, error_from_http
from services.gateway.errors_http import close_reason, error_header, error_response


def kinds() -> list[type[FleetError]]:
    found, todo = [], [FleetError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__ == e.__name__:
                found.append(sub)
                todo.append(sub)
    return found


def sample(kind: type[FleetError]) -> FleetError:
    return e.error_from_wire(
        {"code": kind.code, "message": f"a {kind.__name__} é", "data": {"k": 1}}
    )


def test_every_kind_is_in_the_table_once_with_its_own_code() -> None:
    assert sorted(ERRORS.values(), key=lambda k: k.code) == sorted(kinds(), key=lambda k: k.code)
    assert len({k.code for k in kinds()}) == len(kinds())


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.__name__)
def test_every_kind_has_an_error_status(kind: type[FleetError]) -> None:
    assert 400 <= kind.http_status <= 599
    assert HTTPStatus(kind.http_status)


def test_the_statuses_chosen() -> None:
    """One coherent choice: the caller's mistake 4xx, the machine side not answering 502, the
    platform's own failover 503 (retried as it is), a daemon too slow 504."""
    expected: dict[type[FleetError], int] = {
        e.InvalidParams: 400, e.ParseError: 400, e.InvalidRequest: 400, e.Unauthorized: 401,
        e.Forbidden: 403, e.NotFound: 404, e.FileNotFound: 404, e.Conflict: 409,
        e.MachineStopped: 409, e.WrongFileKind: 409, e.PayloadTooLarge: 413,
        e.FileTooLarge: 413, e.TooManyStreams: 429, e.RateLimited: 429,
        e.DaemonUnavailable: 502, e.StreamAborted: 502, e.TransferAborted: 502,
        e.PortUnreachable: 502, e.Unavailable: 503, e.DaemonTimeout: 504,
    }  # fmt: skip
    assert {k: k.http_status for k in expected} == expected


def test_a_status_without_an_error_object_stands_for_one_kind() -> None:
    assert len(BY_STATUS) == len({k.http_status for k in BY_STATUS.values()})
    assert all(status == kind.http_status for status, kind in BY_STATUS.items())
    assert isinstance(error_from_http(502, b"<html>bad gateway</html>"), e.DaemonUnavailable)
    assert type(error_from_http(418, b"")) is FleetError


@pytest.mark.parametrize("kind", kinds(), ids=lambda k: k.__name__)
def test_an_answer_comes_back_as_the_same_error_from_its_body_or_its_header(
    kind: type[FleetError],
) -> None:
    exc = sample(kind)
    resp = error_response(exc)
    assert resp.status == kind.http_status
    assert resp.body is not None
    header = resp.headers[ERROR_HEADER]
    assert header.isascii()
    for back in (error_from_http(resp.status, bytes(resp.body)),  # type: ignore[arg-type]
                 error_from_http(resp.status, b"", header)):  # fmt: skip
        assert type(back) is kind
        assert (back.code, back.message) == (exc.code, exc.message)


def test_a_long_message_still_fits_a_header_and_a_close_frame() -> None:
    exc = e.ToolError("é" * 10_000, data={"blob": "x" * 10_000})
    header = json.loads(error_header(exc))
    assert header["code"] == e.ToolError.code
    assert len(error_header(exc)) <= 2048
    reason = close_reason(exc)
    assert len(reason) <= 123
    assert reason.decode().startswith("1700 é")  # cut on a character boundary
