"""Secrets that never enter the machine (docs/secrets.md), on real machines of both providers:
a real HTTPS upstream with a CA of its own (trusted by the platform through
FLEET_SECRETS_UPSTREAM_CA) on the host's end of the outside host's link
(tests/integration/egress_outside.py), curl and Python's requests in the machine, a real git
smart-HTTP server over TLS behind basic auth. The proxy's rules one by one, in memory:
tests/fast/test_egress_proxy.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from bench.outside import Outside
from contracts.gateway.secrets import (
    MACHINE_PROXY_URL,
    SECRETS_DELETE,
    SECRETS_SET,
    SecretRef,
    SetSecretParams,
)
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.gitserver import GitHttpServer
from tests.httpserve import start_site
from tests.integration.egress_outside import outside
from tests.integration.test_egress import pip_zip
from tests.tls import server_tls

__all__ = ["docker_gateway", "docker_image", "nats_server", "outside", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

VALUE = "sk-live-0123456789abcdef"
TOKEN = "ghp_private-repo-token"


#: A request an upstream got: its method, Host, Authorization and the port it came from.
Seen = tuple[str, str | None, str | None, int]
ARRIVED = web.AppKey("arrived", asyncio.Queue)


@dataclass
class Upstream:
    host: str
    #: An echo server a secret names, and one none names (both TLS, the test CA's).
    named: int
    other: int
    ca_file: Path
    #: Their server context (the test CA's leaf for ``host``).
    tls: ssl.SSLContext
    #: Each request either got, as it arrives.
    arrived: asyncio.Queue[Seen]

    def seen(self) -> list[Seen]:
        """Every request that arrived and was not taken from ``arrived`` yet."""
        out = []
        while not self.arrived.empty():
            out.append(self.arrived.get_nowait())
        return out


async def _echo(request: web.Request) -> web.Response:
    """Answers the Authorization header it got; each request goes to the app's ``ARRIVED``
    queue, if it has one."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if (arrived := request.app.get(ARRIVED)) is not None:
        got = (request.headers.get("Host"), request.headers.get("Authorization"))
        arrived.put_nowait((request.method, *got, peer[1] if peer else 0))
    return web.json_response({"authorization": request.headers.get("Authorization")})


@pytest.fixture
def upstream_ca(tmp_path: Path, outside: Outside) -> tuple[Path, ssl.SSLContext]:
    """The upstreams' own CA (a file the platform trusts) and a server context from it for
    the host's end of the outside link."""
    ca_file = tmp_path / "upstream-ca.pem"
    return ca_file, server_tls(outside.host_address, ca_file)


@pytest.fixture
def stack_settings(settings: Settings, upstream_ca: tuple[Path, ssl.SSLContext]) -> Settings:
    # A round far longer than any test here: a deleted secret stops on the gateway's notice
    # to the proxy, not on the bound of a lost one (services/provisioner/egress/secrets_cache.py).
    return msgspec.structs.replace(settings, secrets_upstream_ca=str(upstream_ca[0]),
                                   revocation_round_s=300.0)  # fmt: skip


@pytest.fixture
async def upstream(
    outside: Outside, upstream_ca: tuple[Path, ssl.SSLContext]
) -> AsyncIterator[Upstream]:
    app = web.Application()
    arrived: asyncio.Queue[Seen] = asyncio.Queue()
    app[ARRIVED] = arrived
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    named = await start_site(runner, outside.host_address, upstream_ca[1])
    other = await start_site(runner, outside.host_address, upstream_ca[1])
    yield Upstream(outside.host_address, named, other, upstream_ca[0], upstream_ca[1], arrived)
    await runner.cleanup()


async def _ready(stack: FleetClient, instance_id: str, provider: str) -> str:
    machine = await stack.create_machine(instance_id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


async def _sh(stack: FleetClient, machine_id: str, script: str) -> tuple[int, str]:
    """``script`` in a shell that read the machine's .env, as a terminal's does."""
    script = f"set -a; . ~/.fleet/.env; set +a; {script}"
    got = await stack.exec(machine_id, ["sh", "-c", script], timeout_s=60)
    return got.exit_code, got.stdout + got.stderr


#: Python's requests (pip's own copy: a machine brings no requests), as an SDK uses it: the
#: .env's proxy and CA variables, the secret's variable as a bearer token. argv: the URL, a
#: proxy to go through whatever the .env says ("" none), the only CA to trust ("" the .env's).
FETCH = """
import json, os, sys
sys.path.insert(0, "pip.zip")
from pip._vendor import requests
url, proxy, ca = sys.argv[1:4]
headers = {"Authorization": "Bearer " + os.environ.get("API_KEY", "")}
try:
    r = requests.get(url, headers=headers, timeout=20, verify=ca or True,
                     proxies={"https": proxy} if proxy else None)
    print(json.dumps(r.json()))
except requests.RequestException as exc:
    print("refused:", exc)
"""


async def _fetch(
    stack: FleetClient, machine_id: str, url: str, *, proxy: str = "", ca: str = ""
) -> dict[str, str | None] | str:
    """What ``FETCH`` in the machine got: the upstream's answer, or the refusal's text."""
    code, said = await _sh(stack, machine_id, f"python3 -c '{FETCH}' {url} '{proxy}' '{ca}'")
    assert code == 0, said
    return said.removeprefix("refused: ") if said.startswith("refused") else json.loads(said)


async def _nowhere(stack: FleetClient, machine_id: str, text: str) -> str:
    """The files of the machine's home and /tmp and the environments of its processes that
    hold ``text`` (given to grep in two halves: its own command line must not hold it)."""
    half = len(text) // 2
    script = (f"A='{text[:half]}'; B='{text[half:]}'; "
              'grep -rlsF "$A$B" ~ /tmp /proc/[0-9]*/environ; true')  # fmt: skip
    return (await _sh(stack, machine_id, script))[1]


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_secret_reaches_its_host_and_never_the_machine(
    stack: FleetClient, upstream: Upstream, tmp_path: Path, provider: str
) -> None:
    named, other = (f"https://{upstream.host}:{p}/v1" for p in (upstream.named, upstream.other))
    inst = await stack.create_instance("secrets")
    await stack.set_network_policy(inst.id, allow=[upstream.host])  # the host's own: named
    await stack.call(SECRETS_SET, SetSecretParams(
        instance_id=inst.id, name="API_KEY", value=VALUE,
        hosts=[f"{upstream.host}:{upstream.named}"]))  # fmt: skip
    mid = await _ready(stack, inst.id, provider)
    await stack.upload(mid, pip_zip(tmp_path / "pip.zip"), "pip.zip")
    await stack.upload(mid, upstream.ca_file, "upstream-ca.pem")

    assert await _fetch(stack, mid, named) == {"authorization": f"Bearer {VALUE}"}
    if provider == "local":  # the docker machine image has no curl
        _, said = await _sh(stack, mid, f'curl -sS {named} -H "Authorization: Bearer $API_KEY"')
        assert json.loads(said) == {"authorization": f"Bearer {VALUE}"}, said

    # The machine holds the placeholder only: its variables, every process's, its files.
    _, said = await _sh(stack, mid, "echo $API_KEY $HTTPS_PROXY")
    assert said.split() == ["fleet-secret-API_KEY", MACHINE_PROXY_URL]
    assert await _nowhere(stack, mid, VALUE) == ""

    # A host no secret names: a plain tunnel, its own certificate reaching the client.
    got = await _fetch(stack, mid, other, ca="upstream-ca.pem")
    assert got == {"authorization": "Bearer fleet-secret-API_KEY"}

    # The host's loopback through the proxy, and a host the policy denies: refused.
    await stack.set_network_policy(inst.id, allow=[upstream.host], deny=["10.99.0.1"])
    for target in ("https://127.0.0.1:443/", "https://10.99.0.1/"):
        got = await _fetch(stack, mid, target, proxy=MACHINE_PROXY_URL)
        assert isinstance(got, str)
        assert "403" in got

    # Deleted: the next request goes without it.
    await stack.call(SECRETS_DELETE, SecretRef(instance_id=inst.id, name="API_KEY"))
    got = await _fetch(stack, mid, named, proxy=MACHINE_PROXY_URL, ca="upstream-ca.pem")
    assert got == {"authorization": "Bearer fleet-secret-API_KEY"}


async def test_a_plain_exec_reaches_its_host_with_the_secret_and_nothing_sourced(
    stack: FleetClient, upstream: Upstream
) -> None:
    """``fleet machines exec M -- curl https://<upstream>``, as a user or an agent runs it: the
    command has the .env's proxy, CA and placeholder without reading the file, so its request
    goes through the egress proxy and reaches the upstream with the secret."""
    named = f"https://{upstream.host}:{upstream.named}/v1"
    inst = await stack.create_instance("secrets-exec")
    await stack.set_network_policy(inst.id, allow=[upstream.host])
    await stack.call(SECRETS_SET, SetSecretParams(
        instance_id=inst.id, name="API_KEY", value=VALUE,
        hosts=[f"{upstream.host}:{upstream.named}"]))  # fmt: skip
    mid = await _ready(stack, inst.id, "local")  # the docker machine image has no curl
    got = await stack.exec(mid, ["curl", "-sS", named], timeout_s=60)
    assert got.exit_code == 0, got.stderr
    assert json.loads(got.stdout) == {"authorization": f"Bearer {VALUE}"}, got.stdout
    said = await stack.exec(mid, ["printenv", "API_KEY", "HTTPS_PROXY"])
    assert said.stdout.split() == ["fleet-secret-API_KEY", MACHINE_PROXY_URL]
    assert await _nowhere(stack, mid, VALUE) == ""


async def test_another_instances_machine_gets_nothing_of_its_secrets(
    stack: FleetClient, upstream: Upstream
) -> None:
    named = f"https://{upstream.host}:{upstream.named}/v1"
    mine = await stack.create_instance("owner-of-key")
    theirs = await stack.create_instance("other")
    for inst in (mine, theirs):
        await stack.set_network_policy(inst.id, allow=[upstream.host])
    await stack.call(SECRETS_SET, SetSecretParams(
        instance_id=mine.id, name="API_KEY", value=VALUE, hosts=[upstream.host]))  # fmt: skip
    await stack.call(SECRETS_SET, SetSecretParams(
        instance_id=theirs.id, name="OTHER", value="x", hosts=["api.example.com"]))  # fmt: skip
    mid = await _ready(stack, theirs.id, "local")
    await stack.upload(mid, upstream.ca_file, "upstream-ca.pem")
    _, said = await _sh(stack, mid, f"curl -sS --cacert upstream-ca.pem {named}")
    assert json.loads(said) == {"authorization": None}, said


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_private_repo_over_https_needs_no_token_in_the_machine(
    stack: FleetClient, upstream: Upstream, bare_repo: Path, tmp_path: Path, provider: str
) -> None:
    root = tmp_path / "git"
    root.mkdir()
    (root / "app.git").symlink_to(bare_repo)
    git = GitHttpServer(root, "bot", TOKEN, host=upstream.host, tls=upstream.tls)
    async with git:
        inst = await stack.create_instance("private-repo")
        await stack.set_network_policy(inst.id, allow=[upstream.host])
        await stack.add_repo(inst.id, git.url("app.git"), "main", "src/app", token=TOKEN,
                             username="bot")  # fmt: skip
        mid = await _ready(stack, inst.id, provider)
        script = ("cd src/app && git fetch -q origin && git -c user.name=t -c user.email=t@t "
                  "commit -q --allow-empty -m pushed && git push -q origin HEAD:main && "
                  "git log -1 --format=%s")  # fmt: skip
        code, said = await _sh(stack, mid, script)
        assert code == 0, said
        assert said.strip().endswith("pushed")
        assert await _nowhere(stack, mid, TOKEN) == ""
        if provider == "local":  # the docker machine image has no curl
            # Another Host in the repo's tunnel: refused, the token never sent.
            sent = len(git.authorizations)
            refs = f"{git.url('app.git')}/info/refs"
            _, said = await _sh(stack, mid, f"{STATUS} -H 'Host: attacker.example' {refs}")
            assert (said, len(git.authorizations)) == ("403", sent)
    assert str(git.authorizations[-1]).startswith("Basic ")


#: curl printing only the answer's status.
STATUS = "curl -sS -o /dev/null -w '%{http_code}'"


async def _with_secret(stack: FleetClient, upstream: Upstream, name: str) -> str:
    """An instance whose policy allows the upstream's host, with a secret for the named
    upstream only."""
    inst = await stack.create_instance(name)
    await stack.set_network_policy(inst.id, allow=[upstream.host])
    await stack.call(SECRETS_SET, SetSecretParams(
        instance_id=inst.id, name="API_KEY", value=VALUE,
        hosts=[f"{upstream.host}:{upstream.named}"]))  # fmt: skip
    return inst.id


async def test_a_secret_goes_with_its_own_host_and_an_ordinary_method_only(
    stack: FleetClient, upstream: Upstream
) -> None:
    """A shared ingress routes by Host, a server with TRACE on echoes the request's headers:
    inside the secret's tunnel, either would hand it to whoever reads that site or that echo.
    curl in the machine, through its proxy, against a real upstream that records each request."""
    url = f"https://{upstream.host}:{upstream.named}/v1"
    mid = await _ready(stack, await _with_secret(stack, upstream, "hostile-host"), "local")
    # The last: no port, so 443, not the tunnel's.
    for hostile in ("-H 'Host: attacker.example'", "-X TRACE", f"-H 'Host: {upstream.host}'"):
        code, said = await _sh(stack, mid, f"{STATUS} {hostile} {url}")
        assert (code, said) == (0, "403"), hostile
    assert upstream.seen() == []

    # Its own host, with an ordinary method: the secret goes.
    _, said = await _sh(stack, mid, f'curl -sS -X POST {url} -H "Authorization: Bearer $API_KEY"')
    assert json.loads(said) == {"authorization": f"Bearer {VALUE}"}, said
    [(method, host, authorization, _)] = upstream.seen()
    assert (method, host) == ("POST", f"{upstream.host}:{upstream.named}")
    assert authorization == f"Bearer {VALUE}"


#: Python's http.client in the machine, one connection through the proxy kept open (as an
#: SDK's keep-alive pool keeps it): a request, then, once the file ``go`` exists, another on
#: the same connection. Prints what the upstream answered to each (the Authorization it got)
#: and whether the connection was the same.
KEEP_ALIVE = """
import http.client, json, os, ssl, sys, time, urllib.parse
host, port = sys.argv[1], int(sys.argv[2])
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
trust = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
c = http.client.HTTPSConnection(proxy.hostname, proxy.port, timeout=20, context=trust)
c.set_tunnel(host, port)
def get():
    c.request("GET", "/v1", headers={"Authorization": "Bearer " + os.environ["API_KEY"]})
    return json.loads(c.getresponse().read())["authorization"]
first = get()
sock = c.sock
deadline = time.monotonic() + 60
while not os.path.exists("go") and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps([first, get(), c.sock is sock]))
"""


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_deleted_secret_stops_on_a_connection_kept_open(
    stack: FleetClient, upstream: Upstream, provider: str
) -> None:
    inst_id = await _with_secret(stack, upstream, "kept-open")
    mid = await _ready(stack, inst_id, provider)
    client = asyncio.create_task(_sh(stack, mid, f"python3 -c '{KEEP_ALIVE}' "
                                     f"{upstream.host} {upstream.named}"))  # fmt: skip
    try:
        first = await asyncio.wait_for(upstream.arrived.get(), 60)
        assert first[2] == f"Bearer {VALUE}"
        await stack.call(SECRETS_DELETE, SecretRef(instance_id=inst_id, name="API_KEY"))
        await _sh(stack, mid, "touch go")
        code, said = await asyncio.wait_for(client, 90)
    finally:
        client.cancel()
    assert code == 0, said
    assert json.loads(said) == [f"Bearer {VALUE}", "Bearer fleet-secret-API_KEY", True]
    [second] = upstream.seen()
    assert second[3] == first[3]  # one connection from the proxy to the upstream, too


async def test_a_clone_the_policy_refused_at_the_proxy_says_so_and_how_to_allow_it(
    stack: FleetClient, upstream: Upstream, bare_repo: Path, tmp_path: Path
) -> None:
    """git through the egress proxy says only ``CONNECT tunnel failed, response 403``: the
    machine's warning says the instance's network policy refused the host, and how to allow
    it; repos.add said so first. The machine is ready all the same."""
    root = tmp_path / "git"
    root.mkdir()
    (root / "app.git").symlink_to(bare_repo)
    async with GitHttpServer(root, "bot", TOKEN, host=upstream.host, tls=upstream.tls) as git:
        inst = await stack.create_instance("refused-repo")
        await stack.set_network_policy(inst.id, default="deny", allow=["pypi.org"])
        added = await stack.add_repo(inst.id, git.url("app.git"), "main", "src/app",
                                     token=TOKEN, username="bot")  # fmt: skip
        refused = (f"network policy refuses {upstream.host}:{git.port} (its default is deny "
                   f"and no allow entry names {upstream.host}:{git.port}); allow it with "
                   f"`fleet instances network {inst.id} --default deny --allow pypi.org "
                   f"--allow {upstream.host}`")  # fmt: skip
        assert f"its machines cannot clone it: the instance's {refused}" in (added.warning or "")
        asked = len(git.seen)  # by repos.add's check, from the platform's host
        mid = await _ready(stack, inst.id, "local")
        warning = (await stack.get_machine(mid)).setup_warning or ""
    assert warning.startswith(f"repo src/app: git clone {git.url('app.git')} failed: the "
                              f"instance's {refused.replace('refuses', 'refused', 1)}; git "
                              "said: ")  # fmt: skip
    assert "CONNECT tunnel failed, response 403" in warning
    assert len(git.seen) == asked  # the machine's clone was refused before any request
