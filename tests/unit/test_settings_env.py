"""Settings from FLEET_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import PREFIX, Settings, SettingsError


def test_empty_environment_gives_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_strings_are_converted_to_typed_values() -> None:
    settings = Settings.from_env(
        {
            "FLEET_PORT": "9090",
            "FLEET_MAX_DELIVER": "3",
            "FLEET_ACK_WAIT_S": "2.5",
            "FLEET_PROBE_DELAY_S": "0",
            "FLEET_RPC_TIMEOUT_S": "1e-3",
            "FLEET_ENV": "prod",
            "FLEET_NATS_URL": "nats://nats.internal:4222",
        }
    )
    assert settings.port == 9090
    assert settings.max_deliver == 3
    assert settings.ack_wait_s == 2.5
    assert settings.probe_delay_s == 0.0
    assert settings.rpc_timeout_s == 0.001
    assert settings.env == "prod"
    assert settings.nats_url == "nats://nats.internal:4222"
    assert isinstance(settings.port, int)
    assert isinstance(settings.ack_wait_s, float)


def test_unknown_and_unprefixed_variables_are_ignored() -> None:
    settings = Settings.from_env(
        {
            "FLEET_NOT_A_SETTING": "x",
            "FLEET_": "y",
            "PORT": "1",
            "XFLEET_PORT": "2",
            "NATS_URL": "nats://elsewhere:1",
            "FLEET_PORT": "8181",
        }
    )
    assert settings == Settings(port=8181)


def test_empty_string_values_are_kept_for_strings() -> None:
    settings = Settings.from_env({"FLEET_NO_PROXY": "", "FLEET_LOG_LEVEL": "debug"})
    assert settings.no_proxy == ""
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FLEET_PORT", "eighty"),
        ("FLEET_PORT", ""),
        ("FLEET_MAX_DELIVER", "1.5"),
        ("FLEET_CONCURRENCY", "many"),
        ("FLEET_ACK_WAIT_S", "soon"),
        ("FLEET_PROBE_TIMEOUT_S", "60s"),
        ("FLEET_ENV", "staging"),
        ("FLEET_PAUSED_STOP_AFTER_S", "-1"),
        ("FLEET_PAUSED_STOP_AFTER_S", "a day"),
        ("FLEET_WAKE_ON_ACCESS", "maybe"),
        ("FLEET_WAKE_TIMEOUT_S", "0"),
        ("FLEET_ACTIVITY_WRITE_S", "-1"),
        ("FLEET_SWEEP_INTERVAL_S", "0"),
        ("FLEET_INSTANCE_DISK_MB", "-1"),
        ("FLEET_DISK_WALK_ENTRIES", "0"),
        ("FLEET_DISK_WALK_S", "0"),
        ("FLEET_DOCKER_UIDS", "many"),
        ("FLEET_DOCKER_UIDS", "265000-270000"),  # overlaps FLEET_SANDBOX_UIDS
    ],
)
def test_bad_value_names_the_environment_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{var}: "):
        Settings.from_env({"FLEET_PORT": "8080", var: value})


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.__struct_fields__:
        monkeypatch.delenv(PREFIX + name.upper(), raising=False)
    monkeypatch.setenv("FLEET_PORT", "7070")
    monkeypatch.setenv("FLEET_DATA_DIR", "/var/lib/fleet")
    assert Settings.from_env() == Settings(port=7070, data_dir="/var/lib/fleet")


def test_to_env_names_every_field_with_the_prefix() -> None:
    env = Settings().to_env()
    assert set(env) == {PREFIX + name.upper() for name in Settings.__struct_fields__}
    assert all(isinstance(v, str) for v in env.values())
    assert env["FLEET_PORT"] == "8080"


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(
            port=1,
            env="prod",
            ack_wait_s=0.1,
            probe_delay_s=1e-20,
            probe_interval_s=1234567.891,
            egress_proxy="http://proxy:3128",
            no_proxy="",
            ca_bundle="/etc/ca.pem",
            secret_key="k=ey/with+chars",
            nats_password="p a s s",
            log_level="debug",
        ),
    ],
)
def test_to_env_round_trips_through_from_env(settings: Settings) -> None:
    assert Settings.from_env(settings.to_env()) == settings


def test_paths() -> None:
    settings = Settings(data_dir="/srv/fleet", ca_bundle="/etc/ca.pem")
    assert settings.data_path == Path("/srv/fleet")
    assert settings.ca_bundle_path == Path("/etc/ca.pem")
    assert Settings(ca_bundle="").ca_bundle_path is None
