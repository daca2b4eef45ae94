"""The key prefix (``FLEET_KEY_PREFIX``): every key of a store starts with it, and it is a
plain name, so that a scan of ``<prefix>*`` is exactly one fleet's keys."""

from __future__ import annotations

import pytest

from controlplane.settings import DEFAULT_PREFIX, Settings, SettingsError
from controlplane.store import Store
from controlplane.store.keys import Keys

BAD_PREFIXES = [
    "",
    "a b",  # whitespace
    "tab\t",
    "new\nline:",
    "x*",  # glob characters: a scan of the prefix would match another fleet's keys
    "x?",
    "x[a]",
    "x\\",
    "{tag}:",  # a cluster's hash tag
    "x%s",  # the user lookup script formats key templates
    "é:",
    "p" * 65,
]


def test_the_default_is_fleets_own() -> None:
    assert Settings().key_prefix == DEFAULT_PREFIX == "fleet:"
    assert Store("redis://unused").keys.k_machine("m-1") == "fleet:machine:m-1"


def test_every_key_starts_with_the_prefix() -> None:
    keys = Keys("t-1:")
    built = [keys.K_INSTANCES, keys.K_TOKENS, keys.k_machine("m"), keys.k_lock("provision:m"),
             keys.k_create_once("tok", "k"), keys.k_session("s"), keys.k_snapshot("s")]  # fmt: skip
    assert all(k.startswith("t-1:") for k in built), built
    assert keys.pattern() == "t-1:*"


def test_a_store_builds_its_keys_from_its_settings() -> None:
    store = Store.of(Settings(key_prefix="tenant-b:"))
    assert store.keys.k_instance("i-1") == "tenant-b:instance:i-1"
    assert store.keys.K_MACHINES == "tenant-b:machines"


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_a_bad_prefix_is_refused_naming_the_variable(prefix: str) -> None:
    with pytest.raises(SettingsError, match="FLEET_KEY_PREFIX"):
        Settings.from_env({"FLEET_KEY_PREFIX": prefix})
    with pytest.raises(ValueError, match="FLEET_KEY_PREFIX"):
        Store("redis://unused", key_prefix=prefix)


def test_the_prefix_reaches_a_child_process() -> None:
    assert Settings.from_env(Settings(key_prefix="a.b-c:").to_env()).key_prefix == "a.b-c:"
