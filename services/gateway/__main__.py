"""python -m services.gateway"""

from __future__ import annotations

import contextlib
from contextlib import AsyncExitStack

import aiohttp
import msgspec

from base.clock import SYSTEM_CLOCK, Clock
from base.platform_code import code_repo, platform_sha
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.events.subscriptions import enter_subscriptions
from controlplane.policy import CodeVersions
from controlplane.process.metrics import Metrics
from controlplane.process.runner import run_service
from controlplane.process.stage import connect
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings, SettingsError
from services.gateway.auth import AuditLog, CallerNotices, SecretUseAudit
from services.gateway.compose import Gateway, compose
from services.gateway.console import OidcClient
from services.gateway.http import HttpServer, bind_listener, make_app
from services.gateway.rpc import HostClient

#: How long a call to the OpenID provider (discovery, keys, the code exchange) may take.
OIDC_TIMEOUT_S = 10.0
#: An install may build a machine image (docker) before it answers.
INSTALL_TIMEOUT_S = 600.0


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    """The gateway's connections, its parts composed on them (``compose``), served."""
    if not settings.admin_token:
        raise SettingsError("FLEET_ADMIN_TOKEN: required by the gateway (a secret token)")
    # The one clock of this process's time-dependent rules (tests pass a manual one).
    clock = SYSTEM_CLOCK
    # Bound first (0: a port the kernel gives): the URLs the gateway hands out (previews, its
    # sign-in callback) name the ports it listens on, and it logs them (gateway.listening).
    console = stack.enter_context(contextlib.closing(bind_listener(settings.host, settings.port)))
    sock = stack.enter_context(
        contextlib.closing(bind_listener(settings.preview_host, settings.preview_port))
    )
    e2b = stack.enter_context(contextlib.closing(bind_listener(settings.e2b_host,
                                                               settings.e2b_port)))  # fmt: skip
    settings = msgspec.structs.replace(
        settings,
        port=console.getsockname()[1],
        preview_port=sock.getsockname()[1],
        e2b_port=e2b.getsockname()[1],
    )
    gateway = await _composed(settings, stack, clock)
    for part in gateway.resources():
        await stack.enter_async_context(part)
    apps = make_app(gateway)
    await stack.enter_async_context(
        HttpServer(apps.console, settings.host, settings.port, sock=console)
    )
    previews = HttpServer(apps.previews, settings.preview_host, settings.preview_port,
                          name="previews", sock=sock)  # fmt: skip
    await stack.enter_async_context(previews)
    await stack.enter_async_context(HttpServer(apps.e2b, settings.e2b_host, settings.e2b_port,
                                               name="e2b", sock=e2b))  # fmt: skip


async def _composed(settings: Settings, stack: AsyncExitStack, clock: Clock) -> Gateway:
    """The gateway's connections (store, bus, the audit log's, the OpenID provider's), entered
    on ``stack``, and its parts composed on them."""
    store, bus = await connect(
        settings, stack, "gateway", publish_budget_s=settings.gateway_publish_wait_s
    )
    await store.tokens.migrate()  # tokens kept before scopes, in today's shape
    box = SecretBox(settings.secret_key)
    keys = MachineKeys(store, box)
    # Served on the gateway's own port (GET /metrics); the only process that exports the
    # machines-by-status gauge, so that it exists once per deployment.
    metrics = Metrics(process=True)
    metrics.count_machines(store)
    if settings.metrics_per_machine:
        metrics.per_machine(store)
    daemons = DaemonClient(
        bus.nc, keys=keys, timeout_s=settings.rpc_timeout_s, metrics=metrics, fail_when_offline=True
    )
    # Entered before the HTTP servers, so it is left after them: its buffer drains last.
    audit = await stack.enter_async_context(AuditLog(settings, store, metrics, clock))
    # On the audit account's connection: no machine and no other service reaches it.
    await stack.enter_async_context(CallerNotices(audit.nc, store.caller_changes))
    # Entered after the audit log, so left before it: what it buffered is stored on the way out.
    await enter_subscriptions(stack, [SecretUseAudit(audit)], bus, settings, metrics)
    repo = code_repo(settings.code_repo)
    sha = platform_sha(settings.git_sha, repo)
    return compose(
        store=store, bus=bus, daemons=daemons, box=box, settings=settings,
        # restart and refreshCode are carried out by the machine's own host.
        hosts=HostClient(
            bus.nc, default_host_id=settings.host_id, timeout_s=settings.rpc_timeout_s,
            install_timeout_s=INSTALL_TIMEOUT_S,
            build_timeout_s=settings.env_build_timeout_s + settings.rpc_timeout_s,
        ),
        platform_sha=sha, keys=keys, code=CodeVersions(repo, sha), audit=audit, clock=clock,
        oidc=await _oidc(settings, stack, clock), metrics=metrics,
    )  # fmt: skip


async def _oidc(settings: Settings, stack: AsyncExitStack, clock: Clock) -> OidcClient | None:
    """The OpenID provider's client, when sign-in is configured (FLEET_OIDC_ISSUER)."""
    if not settings.oidc_issuer:
        return None
    http = await stack.enter_async_context(
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=OIDC_TIMEOUT_S))
    )
    return OidcClient(http, issuer=settings.oidc_issuer, client_id=settings.oidc_client_id,
                      client_secret=settings.oidc_client_secret, clock=clock)  # fmt: skip


def main() -> None:
    run_service("gateway", build)


if __name__ == "__main__":
    main()
