"""The .env builder: every value it writes round-trips through python-dotenv (with and without
interpolation), no value adds a variable, and a value it cannot write so is refused by name.
tests/integration/test_envfile_shell.py checks the same file against real POSIX shells."""

from __future__ import annotations

import io
import random

import dotenv
import pytest

from base.dotenv import (
    CA_VARS,
    HEADER,
    NO_PROXY_VARS,
    PROXY_VARS,
    build_env_file,
    merge_env,
    quote,
    render,
)
from contracts.validation import env_value_quoting


def parse(content: str, *, interpolate: bool = False) -> dict[str, str | None]:
    return dict(dotenv.dotenv_values(stream=io.StringIO(content), interpolate=interpolate))


def parse_items(content: str, *, interpolate: bool = False) -> list[tuple[str, str | None]]:
    return list(dotenv.dotenv_values(stream=io.StringIO(content), interpolate=interpolate).items())


NASTY_VALUES: list[str] = [
    "",
    " ",
    "   ",
    "plain",
    "two words",
    " leading and trailing ",
    "\t",
    "tab\tinside",
    "line1\nline2",
    "\n",
    "\n\n",
    "trailing newline\n",
    "\nleading newline",
    "carriage\rreturn",
    "\r",
    "crlf\r\nline",
    "\r\n",
    "'",
    "''",
    '"',
    '""',
    "it's",
    'say "hi"',
    "'single quoted'",
    '"double quoted"',
    "mixed '\" quotes",
    "\\",
    "\\\\",
    "trailing backslash\\",
    "two trailing\\\\",
    "\\'",
    "\\\\'",
    "a\\'b",
    "'\\",
    "\\n",
    "literal \\n and real \n",
    "\\t\\r\\0",
    "C:\\path\\to\\file",
    "#",
    "# comment",
    "value # not a comment",
    "value #",
    "a#b",
    "$",
    "$HOME",
    "$$",
    "cost: $5",
    "${X}",
    "${X:-default}",
    "$ {X}",
    "\\${X}",
    "=",
    "a=b",
    "==",
    "KEY=VALUE",
    "export X=1",
    "x\nEVIL=1",
    "x'\nEVIL=1\n'",
    "x\\'\nEVIL=1",
    "x\rEVIL=1",
    "x\r\nEVIL=1",
    "'\nEVIL='1",
    '"\nEVIL="1',
    "\nexport EVIL=1",
    "caf\u00e9",
    "\u2603 snowman",
    "\U0001f600 emoji",
    "\u4e2d\u6587",
    "right-to-left \u202e mark",
    "line\u2028separator",
    "para\u2029separator",
    "next\x85line",
    "\ufeffbom",
    "zero\u200bwidth",
    "\x01\x02\x1b[31m control",
    "\x0b\x0c",
    "\x7f",
    "{}[]()<>|&;*?!~`",
    "-----BEGIN CERT-----\nMIIB\\x+/=\n-----END CERT-----\n",
    "postgres://user:p@ss'w\"rd@host:5432/db?sslmode=require#frag",
    '{"json": "value", "n": 1}',
    "a" * 10_000,
]


def writable(value: str) -> bool:
    return env_value_quoting(value) is not None


WRITABLE = [v for v in NASTY_VALUES if writable(v)]
#: Values no quoting carries unchanged to both python-dotenv and sh: refused, by name.
UNWRITABLE = [
    "${X}",
    "${X:-default}",
    "\\${X}",
    "carriage\rreturn",
    "x\r\nEVIL=1",
    "two trailing\\\\",
    "trailing backslash\\",
    "it's a \\ path",
    "it's $HOME",
    "it's `id`",
    'it\'s "quoted"',
]


def test_most_nasty_values_are_writable() -> None:
    assert len(WRITABLE) > 0.7 * len(NASTY_VALUES)
    assert [v for v in UNWRITABLE if writable(v)] == []


@pytest.mark.parametrize("value", WRITABLE)
@pytest.mark.parametrize("interpolate", [False, True])
def test_value_round_trips_with_and_without_interpolation(value: str, interpolate: bool) -> None:
    assert parse(render({"K": value}), interpolate=interpolate) == {"K": value}


@pytest.mark.parametrize("value", UNWRITABLE)
def test_unwritable_value_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^SECRET_X: the value cannot be written"):
        render({"OK": "1", "SECRET_X": value})


def test_all_nasty_values_in_one_file_keep_keys_values_and_order() -> None:
    env = {f"VAR_{i}": value for i, value in enumerate(WRITABLE)}
    assert parse_items(render(env)) == list(env.items())
    assert parse_items(render(env), interpolate=True) == list(env.items())


@pytest.mark.parametrize(
    "value",
    [
        "x\nEVIL=1",
        "x'\nEVIL=1\n'",
        "x\\'\nEVIL=1",
        "x\\\nEVIL=1",
        "x\rEVIL=1",
        "x\r\nEVIL=1",
        "'\nEVIL='1",
        '"\nEVIL="1',
        "\nexport EVIL=1\n",
        "'; EVIL=1; '",
        "\\'\nEVIL=1\n\\'",
    ],
)
def test_value_cannot_inject_a_variable(value: str) -> None:
    if not writable(value):
        return test_unwritable_value_is_refused_naming_the_variable(value)
    parsed = parse(render({"SAFE": value, "AFTER": "kept"}))
    assert list(parsed) == ["SAFE", "AFTER"]
    assert parsed["SAFE"] == value
    assert parsed["AFTER"] == "kept"


NASTY_ALPHABET: list[str] = [
    *"\n\r\t '\"\\#$={}:-_./@!`;|&*?~",
    *"aZ09",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\u00e9",
    "\u2603",
    "\u2028",
    "\ufeff",
    "\U0001f600",
    "\r\n",
    "\\n",
    "\\'",
    "${",
    "EVIL=1",
    "export ",
]


def random_values(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(NASTY_ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(count)
    ]


def test_random_values_round_trip_without_interpolation() -> None:
    values = [v for v in random_values(seed=20240611, count=800) if writable(v)]
    assert len(values) > 150
    env = {f"R_{i}": value for i, value in enumerate(values)}
    assert parse_items(render(env)) == list(env.items())


def test_random_values_round_trip_with_default_parser() -> None:
    values = [v for v in random_values(seed=7, count=800) if writable(v)]
    assert sum("$" in v for v in values) > 50  # the alphabet really exercises `$`
    env = {f"R_{i}": value for i, value in enumerate(values)}
    assert parse_items(render(env), interpolate=True) == list(env.items())


def test_random_values_one_per_file_round_trip_or_are_refused() -> None:
    for value in random_values(seed=99, count=300):
        if writable(value):
            assert parse(render({"ONLY": value})) == {"ONLY": value}, repr(value)
        else:
            with pytest.raises(ValueError, match=r"^ONLY: "):
                render({"ONLY": value})


def test_rendered_file_starts_with_header_comment() -> None:
    content = render({"A": "1"})
    assert content.startswith(HEADER)
    assert HEADER.startswith("#")
    assert content.endswith("\n")


def test_empty_env_renders_only_the_header() -> None:
    assert render({}) == HEADER
    assert parse(render({})) == {}


def test_quote_uses_single_quotes_or_double_quotes_and_never_escapes() -> None:
    assert quote('a$b\\c`d"e') == "'a$b\\c`d\"e'"
    assert quote("it's") == '"it\'s"'
    with pytest.raises(ValueError, match=r"^NAME: "):
        quote("it's $5", "NAME")


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "trailing\x00"])
def test_nul_in_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        render({"K": value})


@pytest.mark.parametrize(
    "name", ["", "1ABC", "A-B", "A B", "A=B", "A.B", "=", "\u00c4", "A\x00", " A", "export X"]
)
def test_invalid_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="field `name`"):
        render({name: "v"})


@pytest.mark.parametrize("name", ["A", "_", "_A1", "a_b", "PATH", "export", "X" * 200])
def test_valid_names_are_written(name: str) -> None:
    assert parse(render({name: "v"})) == {name: "v"}


def test_invalid_instance_name_is_refused_by_build_env_file() -> None:
    with pytest.raises(ValueError, match="field `name`"):
        build_env_file({"OK": "1"}, {"NOT-OK": "2"})


def test_nul_in_platform_value_is_refused_by_build_env_file() -> None:
    with pytest.raises(ValueError, match="NUL"):
        build_env_file({"P": "a\x00"}, {})


# --- scopes: base (proxy/CA) < platform < instance ----------------------------------------------
def test_instance_vars_win_over_platform_vars() -> None:
    content = build_env_file({"SHARED": "platform", "P_ONLY": "p"}, {"SHARED": "instance"})
    assert parse(content) == {"SHARED": "instance", "P_ONLY": "p"}


def test_merge_env_order_is_base_then_platform_then_instance() -> None:
    merged = merge_env({"P": "p", "X": "p"}, {"I": "i", "X": "i"}, {"B": "b", "X": "b"})
    assert merged == {"B": "b", "X": "i", "P": "p", "I": "i"}
    assert list(merged) == ["B", "X", "P", "I"]


def test_build_env_file_writes_merged_vars_in_merge_order() -> None:
    platform = {"Z": "1", "A": "2"}
    instance = {"M": "3", "Z": "4"}
    content = build_env_file(platform, instance, egress_proxy="http://proxy:3128")
    base = dict.fromkeys(PROXY_VARS, "http://proxy:3128")
    assert parse_items(content) == list(merge_env(platform, instance, base).items())


def test_no_proxy_or_ca_vars_when_nothing_is_configured() -> None:
    assert parse(build_env_file({}, {})) == {}


def test_egress_proxy_sets_all_proxy_vars() -> None:
    parsed = parse(build_env_file({}, {}, egress_proxy="http://proxy:3128"))
    assert parsed == dict.fromkeys(PROXY_VARS, "http://proxy:3128")


def test_no_proxy_is_written_alongside_the_proxy() -> None:
    parsed = parse(
        build_env_file({}, {}, egress_proxy="http://proxy:3128", no_proxy="localhost,::1")
    )
    assert parsed == {
        **dict.fromkeys(PROXY_VARS, "http://proxy:3128"),
        **dict.fromkeys(NO_PROXY_VARS, "localhost,::1"),
    }


def test_no_proxy_alone_writes_nothing() -> None:
    assert parse(build_env_file({}, {}, no_proxy="localhost")) == {}


@pytest.mark.parametrize("ca_path", [None, ""])
def test_no_ca_vars_without_a_ca_path(ca_path: str | None) -> None:
    assert parse(build_env_file({"A": "1"}, {}, ca_path=ca_path)) == {"A": "1"}


def test_ca_path_sets_all_ca_vars() -> None:
    parsed = parse(build_env_file({}, {}, ca_path="/home/dev/.fleet/ca.pem"))
    assert parsed == dict.fromkeys(CA_VARS, "/home/dev/.fleet/ca.pem")


def test_proxy_and_ca_together() -> None:
    parsed = parse(
        build_env_file({}, {}, egress_proxy="http://p:1", no_proxy="n", ca_path="/ca.pem")
    )
    assert set(parsed) == {*PROXY_VARS, *NO_PROXY_VARS, *CA_VARS}


def test_platform_vars_override_proxy_and_ca_vars() -> None:
    parsed = parse(
        build_env_file(
            {"HTTPS_PROXY": "http://platform:1", "SSL_CERT_FILE": "/platform.pem"},
            {},
            egress_proxy="http://proxy:3128",
            ca_path="/ca.pem",
        )
    )
    assert parsed["HTTPS_PROXY"] == "http://platform:1"
    assert parsed["SSL_CERT_FILE"] == "/platform.pem"
    assert parsed["HTTP_PROXY"] == "http://proxy:3128"
    assert parsed["GIT_SSL_CAINFO"] == "/ca.pem"


def test_instance_vars_override_proxy_vars_and_platform_vars() -> None:
    parsed = parse(
        build_env_file(
            {"NO_PROXY": "platform"},
            {"NO_PROXY": "instance", "http_proxy": ""},
            egress_proxy="http://proxy:3128",
            no_proxy="base",
        )
    )
    assert parsed["NO_PROXY"] == "instance"
    assert parsed["no_proxy"] == "base"
    assert parsed["http_proxy"] == ""
    assert parsed["HTTP_PROXY"] == "http://proxy:3128"


def test_proxy_values_are_quoted_like_any_value() -> None:
    proxy = "http://u:p'w\nEVIL=1@proxy:3128"
    parsed = parse(build_env_file({}, {}, egress_proxy=proxy))
    assert parsed == dict.fromkeys(PROXY_VARS, proxy)
