"""Every metrics endpoint of a deployment (the gateway's /metrics, the FLEET_METRICS_PORT of
each other service: the stages, codemode, the auth callout), as Prometheus's own promtool and a
dashboard see them: lint-clean, no empty family, every labelled series a query reads present at
0 from the start; and the auth callout's own counts (callouts, refusals by reason, latency)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.bus.consumers import Durable
from contracts.ids import new_machine_id
from contracts.status import MachineStatus
from controlplane.process.metrics import EVENT_OUTCOMES
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.up.embedded import NatsAuth, NatsServer, PortHold
from fleet.up.stack import SERVICES
from services.auth_callout.__main__ import build as build_callout
from services.auth_callout.callout_metrics import CALLOUT_OUTCOMES, Refusal
from tests.integration.nats_auth.helpers import connect_as, enroll, refused
from tests.integration.test_metrics import scrape, value
from tests.waiters import wait_until

STAGES = {
    "provisioner": (Durable.PROVISIONER, Durable.PROVISIONER_ARCHIVE),
    "setup_pusher": (Durable.SETUP_PUSHER, Durable.SETUP_PUSHER_ENV, Durable.SETUP_PUSHER_REPOS),
    "prober": (Durable.PROBER, Durable.PROBER_BOOT),
    "gateway": (Durable.GATEWAY_AUDIT,),
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (./run test does)",
                    pytrace=False)  # fmt: skip
    return found


def promtool_problems(text: str) -> str:
    """What ``promtool check metrics`` says about an exposition (empty: nothing)."""
    out = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30, check=False)  # fmt: skip
    return (out.stdout + out.stderr).strip() if out.returncode else ""


def empty_families(text: str) -> list[str]:
    return [f.name for f in text_string_to_metric_families(text) if not f.samples]


@pytest.fixture
async def endpoints(
    settings: Settings, nats_auth: tuple[NatsAuth, str]
) -> AsyncIterator[dict[str, str]]:
    """Every service of a deployment, each wired as its __main__ does, on its own metrics port
    (the gateway on its HTTP port): name -> metrics URL."""
    from services.codemode.__main__ import build as codemode
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.provisioner.__main__ import build as provisioner
    from services.setup_pusher.__main__ import build as setup_pusher
    from services.webhooks.__main__ import build as webhooks

    auth, _ = nats_auth
    urls: dict[str, str] = {"gateway": f"http://127.0.0.1:{settings.port}/metrics"}
    async with AsyncExitStack() as es:
        for name, build in (("provisioner", provisioner), ("setup_pusher", setup_pusher),
                            ("prober", prober), ("codemode", codemode),
                            ("webhooks", webhooks), ("auth_callout", build_callout)):  # fmt: skip
            # Named before the service starts, as `fleet up` names it: held (`PortHold`).
            port = es.enter_context(PortHold()).port
            own = msgspec.structs.replace(settings, metrics_port=port)
            if name == "auth_callout":
                own = msgspec.structs.replace(
                    own, nats_user=auth.CALLOUT_USER, nats_password=auth.callout_password
                )
            await build(own, es)
            urls[name] = f"http://127.0.0.1:{port}/metrics"
        await gateway(settings, es)
        yield urls


async def test_every_endpoint_passes_promtool_with_no_empty_family(
    endpoints: dict[str, str],
) -> None:
    # Every service `fleet up` runs (fleet.up.stack.SERVICES), each on the port it is given.
    assert set(endpoints) == set(SERVICES)
    for name, url in endpoints.items():
        status, text, _ = await scrape(url)
        assert status == 200, name
        assert promtool_problems(text) == "", name
        assert empty_families(text) == [], name


async def test_dashboard_series_start_at_zero(endpoints: dict[str, str]) -> None:
    for service, durables in STAGES.items():
        _, text, samples = await scrape(endpoints[service])
        for stage in durables:
            for outcome in EVENT_OUTCOMES:  # the failure-rate query in docs/monitoring.md
                got = value(samples, "fleet_events_handled_total", stage=stage, outcome=outcome)
                assert got == 0, (service, stage, outcome)
            assert value(samples, "fleet_stage_seconds_count", stage=stage) == 0
        # Counted once per deployment, by the gateway: never an empty family elsewhere.
        assert ("fleet_machines" in text) == (service == "gateway"), service
    _, text, samples = await scrape(endpoints["gateway"])
    assert {s.value: value(samples, "fleet_machines", status=s.value) for s in MachineStatus} == {
        s.value: 0 for s in MachineStatus
    }
    _, text, samples = await scrape(endpoints["auth_callout"])
    for outcome in CALLOUT_OUTCOMES:
        assert value(samples, "fleet_auth_callouts_total", outcome=outcome) == 0
    for reason in Refusal:
        assert value(samples, "fleet_auth_refusals_total", reason=reason.value) == 0
    assert value(samples, "fleet_auth_callout_seconds_count") == 0
    assert "fleet_events_handled" not in text
    assert "fleet_daemon_rpc" not in text


async def test_auth_callout_counts_callouts_refusals_by_reason_and_latency(
    endpoints: dict[str, str], store: Store, box: SecretBox, nats_server: NatsServer
) -> None:
    url = endpoints["auth_callout"]
    mid, token = await enroll(store, box)
    nc = await connect_as(nats_server, mid, token)
    await nc.close()
    await refused(nats_server, mid, "not-" + token)
    await refused(nats_server, mid, "not-" + token)
    await refused(nats_server, new_machine_id(), token)
    await refused(nats_server, "admin", "guess")

    async def counted() -> bool:
        _, _, samples = await scrape(url)
        return value(samples, "fleet_auth_callout_seconds_count") == 5

    await wait_until(counted)
    _, text, samples = await scrape(url)
    assert value(samples, "fleet_auth_callouts_total", outcome="allowed") == 1
    assert value(samples, "fleet_auth_callouts_total", outcome="refused") == 4
    refusals = {r.value: value(samples, "fleet_auth_refusals_total", reason=r.value)
                for r in Refusal}  # fmt: skip
    assert refusals == {r.value: 0 for r in Refusal} | {
        "wrong_token": 2, "unknown_machine": 1, "not_machine_id": 1
    }  # fmt: skip
    assert (value(samples, "fleet_auth_callout_seconds_sum") or 0) > 0
    assert promtool_problems(text) == ""
