"""deploy/ validated offline: the Kubernetes manifests against the API's schemas
(kubernetes-validate, strict: an unknown or misspelt field fails), the compose file against the
compose-spec schema, and what a schema cannot say: every FLEET_* name is a real setting (a
misspelt one would be ignored silently), every service runs at least 2 replicas with a
disruption budget, and the cluster sizes match `fleet up --ha`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controlplane.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
#: The oldest Kubernetes the manifests are meant for (policy/v1 PDBs need 1.21+).
K8S_VERSION = "1.29"
SERVICES = {"auth-callout", "provisioner", "setup-pusher", "prober", "webhooks", "gateway"}
#: One per machine node (a host each): a DaemonSet, not a Deployment.
PER_HOST = {"provisioner"}


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name.endswith("-values.yaml"):  # Helm values, not manifests
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("doc", manifests(), ids=_id)
def test_each_manifest_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    deployment = next(d for d in manifests() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _setting_names(env: dict[str, Any]) -> set[str]:
    return {k for k in env if k.startswith(PREFIX)}


KNOWN = {PREFIX + f.upper() for f in Settings.__struct_fields__} | {"FLEET_REDIS_PASSWORD"}


def test_every_setting_in_the_manifests_exists() -> None:
    names: set[str] = set()
    for doc in manifests():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "fleetd-config":
            names |= _setting_names(doc["data"])
        if doc["kind"] in ("Deployment", "DaemonSet"):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                names |= _setting_names({e["name"]: e for e in c.get("env", [])})
    assert names
    assert names <= KNOWN, names - KNOWN


def test_every_service_has_replicas_a_budget_and_the_gateway_a_service() -> None:
    docs = manifests()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == SERVICES - PER_HOST
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app"]: d
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    for name, d in deployments.items():
        assert d["spec"]["replicas"] >= 2, name
        assert budgets[name]["spec"]["minAvailable"] < d["spec"]["replicas"], name
    gateway = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "gateway")
    assert gateway["spec"]["selector"] == {"app": "gateway"}
    sets = {
        d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"
    }
    assert sets == {"valkey": 3, "sentinel": 3}


def test_the_provisioner_runs_on_each_machine_node_as_its_host() -> None:
    """A DaemonSet: the node's name is the host id, the node's Docker engine its machines'."""
    (ds,) = [d for d in manifests() if d["kind"] == "DaemonSet"]
    assert ds["metadata"]["name"] in PER_HOST
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FLEET_HOST_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    config = next(d for d in manifests() if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "fleetd-config")  # fmt: skip
    assert config["data"]["FLEET_DEFAULT_PROVIDER"] == "docker"
    assert int(env["FLEET_HOST_CAPACITY"]["value"]) > 0
    sockets = [v for v in spec["volumes"] if v.get("hostPath", {}).get("type") == "Socket"]
    assert [v["hostPath"]["path"] for v in sockets] == ["/var/run/docker.sock"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[sockets[0]["name"]] == "/var/run/docker.sock"


def test_nats_values_make_a_jetstream_cluster_of_three() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    assert values["config"]["jetstream"]["enabled"] is True
    assert values["config"]["jetstream"]["fileStore"]["enabled"] is True
    config = next(
        d
        for d in manifests()
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fleetd-config"
    )
    assert config["data"]["FLEET_STREAM_REPLICAS"] == "3"
    assert len(config["data"]["FLEET_NATS_URL"].split(",")) == 3


def test_the_compose_file_follows_the_compose_spec() -> None:
    schema = json.loads((REPO / "tests" / "data" / "compose-spec.json").read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    validator = jsonschema.Draft7Validator(schema)  # its $schema: draft-07
    validator.validate(compose)
    broken = dict(compose, services=dict(compose["services"], prober={"imagee": "x"}))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_the_compose_services_are_replicated_and_use_real_settings() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]  # anchors merged by the loader
    fleetd = {n: s for n, s in services.items() if s.get("image") == "fleetd:latest"}
    assert set(fleetd) == SERVICES
    for name, s in fleetd.items():
        assert s["deploy"]["replicas"] >= 2, name
        assert _setting_names(s["environment"]) <= KNOWN, name
    assert {n for n in services if n.startswith("nats-")} == {"nats-0", "nats-1", "nats-2"}
    assert sum(n.startswith("sentinel-") for n in services) == 3
    assert sum(n.startswith("valkey-") for n in services) == 3
