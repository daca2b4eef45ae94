"""``FleetClient``'s reading of the audit log (a mixin: ``client.py`` is full): ``audit.list``."""

from __future__ import annotations

from datetime import datetime

from contracts import audit as a
from contracts.jsonrpc import new_params
from fleet.client_retry import Calls


class AuditClient:
    async def audit(
        self: Calls,
        *,
        actor: str | None = None,
        instance_id: str | None = None,
        machine_id: str | None = None,
        method: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[a.AuditEntry]:
        """Audit entries, newest first, that match every filter given (admins only)."""
        params = new_params(a.AuditListParams, actor=actor, instance_id=instance_id,
                            machine_id=machine_id, method=method, since=since,
                            limit=limit)  # fmt: skip
        return (await self.call(a.AUDIT_LIST, params)).entries
