"""The client-side JSON-RPC codec: encode_request and decode_response."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.errors import (
    ERRORS,
    FleetError,
    InternalError,
    InvalidParams,
    InvalidRequest,
    NotFound,
    ParseError,
)
from contracts.rpc.jsonrpc import (
    Dispatcher,
    MethodSpec,
    Params,
    Result,
    Router,
    decode_response,
    decode_result,
    encode_call,
    encode_request,
    new_params,
)


class GreetParams(Params, kw_only=True):
    user_name: str
    times: int = 1


class CheckedParams(Params, kw_only=True):
    user_name: str
    nickname: str | None = None

    def __post_init__(self) -> None:
        if not self.user_name.isidentifier():
            raise ValueError("field `userName` must be an identifier")


class Greeting(Result, kw_only=True):
    text_value: str


async def greet(params: GreetParams, _: None) -> Greeting:
    if params.user_name == "ghost":
        raise NotFound("no such user")
    return Greeting(text_value=" ".join([f"hi {params.user_name}"] * params.times))


GREET = MethodSpec("greet", GreetParams, Greeting, "Greets.", (NotFound,))
CHECKED = MethodSpec("checked", CheckedParams, Greeting, "Checks its params.")


@pytest.fixture
def server() -> Dispatcher[None]:
    router = Router[None]()
    router.register(GREET, greet)
    return Dispatcher([GREET], router)


def response(**members: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, **members}).encode()


# --- encode_request -----------------------------------------------------------------------------
@pytest.mark.parametrize("req_id", [1, "abc", None])
def test_encode_request_builds_a_jsonrpc_envelope(req_id: Any) -> None:
    body = encode_request("greet", {"userName": "ada"}, req_id)
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "id": req_id,
        "method": "greet",
        "params": {"userName": "ada"},
    }


def test_encode_request_encodes_params_structs_in_camel_case() -> None:
    body = encode_request("greet", GreetParams(user_name="ada", times=2), 5)
    assert json.loads(body)["params"] == {"userName": "ada", "times": 2}


def test_encode_call_leaves_defaults_out() -> None:
    """Omitted optional fields are not sent as explicit nulls (the server fills them in)."""
    body = encode_call(GREET, GreetParams(user_name="ada"), 7)
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "greet",
        "params": {"userName": "ada"},
    }
    nick = encode_call(CHECKED, CheckedParams(user_name="ada", nickname=None), 1)
    assert json.loads(nick)["params"] == {"userName": "ada"}


def test_new_params_fails_as_the_server_would() -> None:
    assert new_params(CheckedParams, user_name="ada") == CheckedParams(user_name="ada")
    with pytest.raises(InvalidParams, match="identifier") as caught:
        new_params(CheckedParams, user_name="not one")
    assert caught.value.code == -32602
    assert caught.value.to_wire()["data"] == {"field": "$.userName"}


# --- round trip through a dispatcher ------------------------------------------------------------
async def test_request_and_response_round_trip(server: Dispatcher[None]) -> None:
    answer = await server.handle(encode_request("greet", GreetParams(user_name="ada"), 1), None)
    assert answer is not None
    assert decode_response(answer, Greeting) == Greeting(text_value="hi ada")


async def test_typed_call_round_trip(server: Dispatcher[None]) -> None:
    answer = await server.handle(encode_call(GREET, GreetParams(user_name="ada", times=2), 1), None)
    assert answer is not None
    assert decode_result(GREET, answer) == Greeting(text_value="hi ada hi ada")


async def test_application_error_round_trips(server: Dispatcher[None]) -> None:
    answer = await server.handle(encode_request("greet", {"userName": "ghost"}, 1), None)
    assert answer is not None
    with pytest.raises(NotFound, match="no such user") as info:
        decode_response(answer, Greeting)
    assert info.value.code == 1004


async def test_invalid_params_round_trip_keeps_the_field(server: Dispatcher[None]) -> None:
    answer = await server.handle(encode_request("greet", {"userName": "a", "times": "x"}, 1), None)
    assert answer is not None
    with pytest.raises(InvalidParams) as info:
        decode_response(answer, Greeting)
    assert info.value.field == "$.times"
    assert info.value.data == {"field": "$.times"}


# --- decode_response ----------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "cls"), sorted(ERRORS.items()))
def test_error_response_raises_the_registered_class(code: int, cls: type[FleetError]) -> None:
    body = response(error={"code": code, "message": f"boom {code}"})
    with pytest.raises(FleetError) as info:
        decode_response(body, Greeting)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.message == f"boom {code}"


def test_error_table_is_keyed_by_each_class_code() -> None:
    assert all(cls.code == code for code, cls in ERRORS.items())
    assert len(set(ERRORS.values())) == len(ERRORS)


def test_error_data_is_kept() -> None:
    body = response(error={"code": 1004, "message": "gone", "data": {"machineId": "m-1"}})
    with pytest.raises(NotFound) as info:
        decode_response(body, Greeting)
    assert info.value.data == {"machineId": "m-1"}


def test_invalid_params_response_keeps_field() -> None:
    body = response(error={"code": -32602, "message": "bad", "data": {"field": "$.mode"}})
    with pytest.raises(InvalidParams) as info:
        decode_response(body, Greeting)
    assert info.value.field == "$.mode"


def test_invalid_params_without_data_has_no_field() -> None:
    with pytest.raises(InvalidParams) as info:
        decode_response(response(error={"code": -32602, "message": "bad"}), Greeting)
    assert info.value.field is None


def test_unknown_error_code_raises_the_root_class() -> None:
    with pytest.raises(FleetError) as info:
        decode_response(response(error={"code": 4242, "message": "new kind"}), Greeting)
    assert type(info.value) is FleetError
    assert info.value.message == "new kind"


def test_result_is_decoded_into_the_result_type() -> None:
    body = response(result={"textValue": "hello"})
    assert decode_response(body, Greeting) == Greeting(text_value="hello")


def test_null_result_is_a_result() -> None:
    assert decode_response(response(result=None), type(None)) is None


def test_result_of_the_wrong_shape_is_an_internal_error() -> None:
    with pytest.raises(InternalError):
        decode_response(response(result={"text": 1}), Greeting)


def test_response_without_result_or_error_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        decode_response(response(), Greeting)


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"[1, 2"])
def test_malformed_response_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        decode_response(body, Greeting)
