"""A docker gvisor machine's container (providers/docker/gvisor.py) and the check of the
engine's runsc (controlplane/policy/runtimes.py ``engine_refusal``): a gvisor machine's
container names runsc, every other names runc; an engine whose runsc would run the machine on
gVisor's own network stack (where the machine's egress rules see nothing) is refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base.tokenfd import DAEMON_RUN_AS_VAR, LOADER_VAR
from controlplane.policy import Limits, Placement, engine_refusal, keeps_memory, runtime_refusal
from providers.docker.gvisor import GVISOR_ARGV, as_gvisor
from providers.docker.image import LOADER
from providers.docker.provider import DockerProvider, token_owner

GOOD = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace", "--network=host"]}}


def provider(tmp_path: Path) -> DockerProvider:
    return DockerProvider(
        nats_url="nats://172.30.0.1:4222", network="fleet-machines", base_image="debian:12",
        work_dir=tmp_path, code_repo=tmp_path,
    )  # fmt: skip


def config(tmp_path: Path, place: Placement) -> dict[str, Any]:
    return provider(tmp_path).container_config("m-0123456789abcdef", "img", place)


def test_the_engines_runsc_must_run_on_the_host_kernels_stack_in_the_containers_namespace() -> None:
    assert engine_refusal(GOOD, "ptrace") is None
    missing = engine_refusal({"runc": {"path": "runc"}}, "ptrace")
    assert missing is not None
    assert "no runsc runtime" in missing
    assert "daemon.json" in missing
    assert "SIGHUP" in missing
    assert engine_refusal(None, "ptrace") is not None
    # gVisor's own stack writes frames the container namespace's inet rules never see.
    own_stack = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace"]}}
    why = engine_refusal(own_stack, "ptrace")
    assert why is not None
    assert "--network=host" in why
    assert engine_refusal(GOOD, "kvm") is not None  # another platform than the platform's
    assert engine_refusal({"runsc": "not a mapping"}, "ptrace") is not None
    bad_args = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": "--network=host"}}
    assert engine_refusal(bad_args, "ptrace") is not None


def test_a_gvisor_container_names_runsc_and_every_other_names_runc(tmp_path: Path) -> None:
    ns = config(tmp_path, Placement("i", Limits()))
    assert ns["HostConfig"]["Runtime"] == "runc"
    gv = as_gvisor(config(tmp_path, Placement("i", Limits(), runtime="gvisor")), (1000, 1000))
    assert gv["HostConfig"]["Runtime"] == "runsc"
    pooled = provider(tmp_path).base_config("img", "h", {}, {}, "v", Placement("", Limits()))
    assert pooled["HostConfig"]["Runtime"] == "runc"  # a warm pool's container is never gvisor


def test_a_gvisor_containers_first_process_is_gvisors_root_with_three_capabilities(
    tmp_path: Path,
) -> None:
    gv = as_gvisor(config(tmp_path, Placement("i", Limits(), runtime="gvisor")), (1001, 1002))
    host = gv["HostConfig"]
    assert gv["User"] == "0:0"
    assert (host["CapDrop"], sorted(host["CapAdd"])) == (["ALL"], ["KILL", "SETGID", "SETUID"])
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert gv["Cmd"] == GVISOR_ARGV
    assert LOADER not in GVISOR_ARGV
    assert f"{LOADER_VAR}=" in gv["Env"]
    assert f"{DAEMON_RUN_AS_VAR}=1001:1002" in gv["Env"]
    assert [e for e in gv["Env"] if e.startswith(DAEMON_RUN_AS_VAR)] == [
        f"{DAEMON_RUN_AS_VAR}=1001:1002"
    ]
    assert token_owner(Placement("i", Limits(), runtime="gvisor"), (300001, 300001)) == (0, 0)
    assert token_owner(Placement("i", Limits()), (300001, 300001)) == (300001, 300001)


def test_only_local_gvisor_machines_keep_their_memory_and_docker_runs_gvisor() -> None:
    assert keeps_memory("gvisor", "local")
    assert not keeps_memory("gvisor", "docker")
    assert not keeps_memory("namespaces", "local")
    assert runtime_refusal("docker", "gvisor", "/no/runsc") is None  # the engine's runsc, not ours
    why = runtime_refusal("swarm", "gvisor", "runsc")
    assert why is not None
    assert "swarm" in why
