"""What a settings error tells a person: the environment variable and what it takes, not
msgspec's path (shared by the platform's Settings and the daemon's)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Literal

PREFIX = "FLEET_"


def name_env_var(message: str, raw: Mapping[str, str], settings_type: type) -> str:
    """msgspec says "Expected `float`, got `str` - at `$.probe_timeout_s`"; users set
    FLEET_PROBE_TIMEOUT_S=abc, and want to read what it takes."""
    if "`$." not in message:  # from __post_init__: its messages name the variable already
        return message if message.startswith(PREFIX) else f"invalid settings: {message}"
    field = message.partition("`$.")[2].split("`", 1)[0]
    hint = typing.get_type_hints(settings_type).get(field)
    return f"{PREFIX}{field.upper()}: {raw.get(field, '')!r} is not {_what_it_takes(hint)}"


def _what_it_takes(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "an integer", float: "a number"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")
