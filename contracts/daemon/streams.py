"""Byte streams between the platform and a machine's daemon: the frames on the wire.

A stream is opened by an ordinary signed RPC to the daemon, which answers with its stream id
(``StreamOpened``). Its frames then flow on two core NATS subjects of that machine, one per
direction: ``subjects.stream_from_machine`` (only that machine may publish there) and
``subjects.stream_to_machine`` (only the platform may). Every frame is one NATS message:

- ``DATA seq bytes``: the next chunk, numbered from 0, at most ``MAX_CHUNK`` bytes;
- ``CREDIT limit``: the sender may have sent ``limit`` bytes in all (absolute, so a lost or
  repeated grant does no harm; repeated every few seconds as a keepalive);
- ``END count code``: nothing more comes on this direction after ``count`` chunks; ``code`` is
  an exit code where there is one (a process), else null;
- ``ABORT reason``: the whole stream is torn down, both directions.

Binary, not JSON: a chunk is sent as it was read, and one header parse per chunk is all the
receiver pays. ``base.byte_stream.ByteStream`` is the endpoint both sides use.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Annotated

import msgspec

from contracts.rpc.jsonrpc import Result

#: A stream's id: 32 hex digits, one subject token.
StreamId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]

#: The largest chunk a receiver accepts: well under NATS's default 1 MiB payload limit, with
#: room for the headers nats-py adds.
MAX_CHUNK = 512 * 1024
#: The chunk size a sender uses unless told otherwise (DESIGN.md: 251 MiB/s raw at 64 KiB).
DEFAULT_CHUNK = 64 * 1024
#: How many bytes a receiver lets its peer have in flight unless told otherwise.
DEFAULT_WINDOW = 8 * DEFAULT_CHUNK
#: A receiver re-grants (and so proves it is alive) at least this often.
KEEPALIVE_S = 5.0
#: A peer silent for this long (no frame, not even a keepalive) has vanished: abort.
PEER_TIMEOUT_S = 20.0
#: An abort's reason is cut to this many bytes.
MAX_REASON = 512


class FrameKind(IntEnum):
    DATA = 1
    CREDIT = 2
    END = 3
    ABORT = 4


#: kind (1 byte), then a number: the chunk's seq (DATA), the byte limit (CREDIT), the chunk
#: count (END), 0 (ABORT). Big-endian.
_HEADER = struct.Struct(">BQ")
HEADER_SIZE = _HEADER.size


class Data(msgspec.Struct, frozen=True):
    seq: int
    payload: bytes


class Credit(msgspec.Struct, frozen=True):
    limit: int


class End(msgspec.Struct, frozen=True):
    count: int
    code: int | None = None


class Abort(msgspec.Struct, frozen=True):
    reason: str


Frame = Data | Credit | End | Abort


class _EndBody(msgspec.Struct, frozen=True):
    code: int | None = None


_END_ENCODER = msgspec.json.Encoder()
_END_DECODER = msgspec.json.Decoder(_EndBody)


class FrameError(ValueError):
    """Bytes that are not a frame."""


def encode_data(seq: int, payload: bytes | memoryview) -> bytes:
    return _HEADER.pack(FrameKind.DATA, seq) + payload


def encode_credit(limit: int) -> bytes:
    return _HEADER.pack(FrameKind.CREDIT, limit)


def encode_end(count: int, code: int | None = None) -> bytes:
    return _HEADER.pack(FrameKind.END, count) + _END_ENCODER.encode(_EndBody(code=code))


def encode_abort(reason: str) -> bytes:
    text = reason.encode(errors="replace")[:MAX_REASON]
    return _HEADER.pack(FrameKind.ABORT, 0) + text


def decode_frame(raw: bytes) -> Frame:
    """The frame in one NATS message; ``FrameError`` for anything else."""
    if len(raw) < HEADER_SIZE:
        raise FrameError(f"a frame is at least {HEADER_SIZE} bytes, got {len(raw)}")
    kind, number = _HEADER.unpack_from(raw)
    if kind == FrameKind.DATA:
        if len(raw) - HEADER_SIZE > MAX_CHUNK:
            raise FrameError(f"a chunk is at most {MAX_CHUNK} bytes")
        return Data(number, raw[HEADER_SIZE:])
    if kind == FrameKind.CREDIT:
        return Credit(number)
    if kind == FrameKind.END:
        try:
            body = _END_DECODER.decode(raw[HEADER_SIZE:])
        except msgspec.DecodeError as exc:
            raise FrameError(f"bad end frame: {exc}") from None
        return End(number, body.code)
    if kind == FrameKind.ABORT:
        return Abort(raw[HEADER_SIZE : HEADER_SIZE + MAX_REASON].decode(errors="replace"))
    raise FrameError(f"unknown frame kind {kind}")


class StreamOpened(Result, kw_only=True):
    """What a daemon method that opens a byte stream answers: where its frames flow."""

    stream_id: StreamId
