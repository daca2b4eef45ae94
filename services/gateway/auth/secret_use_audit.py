"""A machine's first use of each secret, as audit entries.

The egress proxy runs beside each host's provisioner, which may not write the audit log (only
the gateway's audit credential may: docs/audit.md), so it publishes ``machine.secret-used`` and
the gateway records it here. The durable consumer ``gateway-audit`` is shared by the gateway
replicas (each event goes to one of them) and acks an event once its entry is in the audit
log's buffer; an event no gateway acked (one stopped or not running) is delivered when one
runs again.
"""

from __future__ import annotations

import structlog

from contracts.bus.consumers import Durable
from contracts.bus.events import Event, MachineSecretUsed
from contracts.gateway import audit as a
from controlplane.events.subscriptions import subscriber
from services.gateway.auth.audit_log import AuditLog

log = structlog.get_logger(__name__)


class SecretUseAudit:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    @subscriber(MachineSecretUsed, durable=Durable.GATEWAY_AUDIT)
    async def on_secret_used(self, event: MachineSecretUsed) -> None:
        # The machine's instance is looked up by the audit log, as for any entry naming one.
        # ``name``, not ``secret``: the redaction table hides any field named ``secret``.
        self.audit.record(a.Action.SECRET_FIRST_USE, actor=a.EGRESS_PROXY,
                          machine_id=event.machine_id,
                          params={"name": event.secret, "host": event.host})  # fmt: skip

    async def give_up(self, event: Event, reason: str) -> None:
        """Recording never fails: only a bug gets here. The machine is not failed for it."""
        log.error("audit.secret_use_not_recorded", machine_id=event.machine_id,
                  event_id=event.event_id, reason=reason)  # fmt: skip
