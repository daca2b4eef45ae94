"""The client's side of a JSON-RPC batch: the answers matched to the requests by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from contracts.errors import InternalError, ParseError
from contracts.rpc.jsonrpc import MethodSpec, R, RequestId, decode_result


class _Id(msgspec.Struct):
    id: RequestId = None


def decode_batch(spec: MethodSpec[Any, R], body: bytes, ids: Sequence[RequestId]) -> list[R]:
    """The results of a batch of ``spec`` calls sent with ``ids``, in that order; the first
    failed call (in request order) raises its error. A single answer instead of a list (the
    whole request was refused: its signature, its size) raises the error it carries."""
    if not body.lstrip().startswith(b"["):
        decode_result(spec, body)  # raises the error the refusal carries
        raise InternalError("a batch was answered with a single result")
    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise ParseError(f"malformed JSON-RPC batch response: {exc}") from None
    by_id = {msgspec.json.decode(item, type=_Id).id: bytes(item) for item in items}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InternalError(f"the batch's answer has no response to request ids {missing}")
    return [decode_result(spec, by_id[i]) for i in ids]
