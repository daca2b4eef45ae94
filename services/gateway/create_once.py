"""``machines.create`` and ``machines.rebuild`` with an ``idempotencyKey``: the client's retries
of one logical call (its first answer lost to a failover or a cut connection) make one machine,
and a retried rebuild archives the machine it replaced, never the one it made.

The key is scoped to the calling token and stored with the machine record in one step
(``store.creates``), which also reads the instance's current machine: the one a rebuild
replaces. A repeat with the same method and params answers the machine the key names; with
others it is ``IdempotencyKeyReused``. A repeat that finds that machine still ``created`` (no
stage has touched it: the first call may have stopped before its events went out, on a bus
outage or a crash) does the first call's remaining work again: archive the replaced machine
(a rebuild), publish ``machine.created``. Both events carry ids derived from the machine's, so
the stream's duplicate window drops a repeat inside it; after it, the provisioner's
compare-and-set skips a machine already past ``created``, and archiving is idempotent.
"""

from __future__ import annotations

from controlplane.create_once import fingerprint, make, repeat
from controlplane.settings import Settings
from controlplane.store_creates import CreateOnce
from services.gateway.access import Caller

__all__ = ["make", "once_of", "repeat"]


def once_of(method: str, key: str | None, c: Caller, s: Settings, *asks: str) -> CreateOnce | None:
    """The key of this call, if it has one. The fingerprint covers the method and what the
    call asks for (``asks``: the instance, a create's provider), not the key itself."""
    if key is None:
        return None
    digest = fingerprint(method, *asks)
    return CreateOnce(scope=c.token_id, key=key, fingerprint=digest, ttl_s=s.idempotency_ttl_s)
