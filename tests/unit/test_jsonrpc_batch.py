"""Matching a JSON-RPC batch's answers to its requests (the daemon client's write_files)."""

from __future__ import annotations

import json

import pytest

from contracts.daemon.rpc import WRITE_FILE, WriteFileResult
from contracts.errors import InternalError, InvalidParams, ParseError, Unauthorized
from contracts.rpc.jsonrpc import encode_error
from contracts.rpc.jsonrpc_batch import decode_batch


def ok(req_id: int, path: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": req_id, "result": {"path": path, "bytesWritten": 1}}


def body(*items: object) -> bytes:
    return json.dumps(list(items)).encode()


def test_answers_in_request_order_whatever_their_order() -> None:
    got = decode_batch(WRITE_FILE, body(ok(8, "/b"), ok(7, "/a")), [7, 8])
    assert got == [WriteFileResult(path="/a", bytes_written=1),
                   WriteFileResult(path="/b", bytes_written=1)]  # fmt: skip


def test_the_first_failed_call_in_request_order_raises() -> None:
    failed = json.loads(encode_error(InvalidParams("$.path: outside the home"), 8))
    with pytest.raises(InvalidParams, match="outside the home"):
        decode_batch(WRITE_FILE, body(ok(7, "/a"), failed), [7, 8])


def test_a_whole_request_refused_raises_its_error() -> None:
    refused = encode_error(Unauthorized("bad signature"))
    with pytest.raises(Unauthorized, match="bad signature"):
        decode_batch(WRITE_FILE, refused, [1, 2])


def test_a_missing_answer_is_an_error_not_a_silent_gap() -> None:
    with pytest.raises(InternalError, match=r"\[2\]"):
        decode_batch(WRITE_FILE, body(ok(1, "/a")), [1, 2])


def test_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        decode_batch(WRITE_FILE, b"[{", [1])
