"""FLEET_CODEMODE_RUNTIME: its values, the runsc it needs, and the gVisor sandbox's OCI spec
(the sandbox itself: tests/integration/test_codemode_gvisor.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.settings import Settings, SettingsError
from services.codemode.sandbox import SANDBOX_UID, Limits
from services.codemode.sandbox_gvisor import CHANNEL_DIR, Runsc, bundle_spec, codemode_runsc


@pytest.mark.parametrize("value", ["runsc", "bwrap", "GVISOR", ""])
def test_a_bad_runtime_names_the_variable_and_its_values(value: str) -> None:
    with pytest.raises(
        SettingsError, match=r"^FLEET_CODEMODE_RUNTIME: .* is not one of namespaces, gvisor$"
    ):
        Settings.from_env({"FLEET_CODEMODE_RUNTIME": value})


def test_namespaces_is_the_default_and_needs_no_runsc() -> None:
    settings = Settings.from_env({"FLEET_RUNSC": "/nonexistent/runsc"})
    assert settings.codemode_runtime == "namespaces"
    assert codemode_runsc(settings) is None


def test_gvisor_without_runsc_stops_the_service_named() -> None:
    settings = Settings.from_env(
        {"FLEET_CODEMODE_RUNTIME": "gvisor", "FLEET_RUNSC": "/nonexistent/runsc"}
    )
    with pytest.raises(SettingsError, match=r"^FLEET_CODEMODE_RUNTIME=gvisor needs runsc: "):
        codemode_runsc(settings)


def test_gvisor_runs_on_the_hosts_runsc_and_platform(tmp_path: Path) -> None:
    runsc = Path("/bin/true").resolve()
    settings = Settings.from_env({"FLEET_CODEMODE_RUNTIME": "gvisor", "FLEET_RUNSC": str(runsc),
                                  "FLEET_GVISOR_PLATFORM": "kvm",
                                  "FLEET_DATA_DIR": str(tmp_path)})  # fmt: skip
    assert codemode_runsc(settings) == Runsc(str(runsc), "kvm", tmp_path / "codemode-gvisor")


def test_the_spec_gives_no_network_no_privilege_and_the_limits(tmp_path: Path) -> None:
    spec = bundle_spec(tmp_path, Limits(cpu_s=7, memory_mb=100, open_files=30))
    argv = Runsc("runsc", "ptrace", tmp_path).argv("run")
    assert argv[argv.index("--network") + 1] == "none"
    assert {"type": "network"} in spec["linux"]["namespaces"]  # a new one, empty
    process = spec["process"]
    assert process["user"] == {"uid": SANDBOX_UID, "gid": SANDBOX_UID}
    assert process["noNewPrivileges"] is True
    assert all(caps == [] for caps in process["capabilities"].values())
    rlimits = {r["type"]: r["hard"] for r in process["rlimits"]}
    assert rlimits == {"RLIMIT_CPU": 7, "RLIMIT_AS": 100 << 20, "RLIMIT_FSIZE": 16 << 20,
                       "RLIMIT_NOFILE": 30}  # fmt: skip
    assert spec["root"]["readonly"] is True
    binds = {m["destination"]: m["options"] for m in spec["mounts"] if m["type"] == "bind"}
    # Read-only, but for the run's channel directory; nothing of the host's /etc or data.
    assert all("ro" in opts for dst, opts in binds.items() if dst != CHANNEL_DIR)
    assert not any(dst.startswith(("/etc", "/home", "/root", "/var")) for dst in binds)
    assert not any(e.startswith("FLEET_") for e in process["env"])
