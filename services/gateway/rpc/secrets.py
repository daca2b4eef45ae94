"""The gateway's ``secrets.*`` methods: an instance's secrets, sealed as they arrive.

A value is sealed with the platform's ``SecretBox`` before it is stored and is never answered,
logged or published: only the egress proxy opens it, to add it to a request on the way out.
After a change the instance's running machines are told (``EnvChanged``) so that their ``.env``
gets, or loses, the secret's placeholder.
"""

from __future__ import annotations

from contracts.bus.events import EnvChanged
from contracts.errors import InvalidParams
from contracts.gateway.secrets import (
    MAX_SECRETS,
    SECRETS_DELETE,
    SECRETS_LIST,
    SECRETS_SET,
    SecretDeleted,
    SecretInfo,
    SecretList,
    SecretListParams,
    SecretRef,
    SetSecretParams,
)
from contracts.ids import new_event_id
from contracts.rpc.jsonrpc import handles
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.store import Store, StoredSecret, TooManySecrets
from services.gateway.auth import Access, Caller


class SecretOps:
    def __init__(self, *, store: Store, bus: Bus, box: SecretBox, access: Access) -> None:
        self._records = store.secrets
        self._bus = bus
        self._box = box
        self._access = access

    @handles(SECRETS_SET)
    async def secrets_set(self, p: SetSecretParams, c: Caller) -> SecretInfo:
        await self._access.instance_exists(c, p.instance_id)
        secret = StoredSecret(name=p.name, hosts=p.hosts, header=p.header, format=p.format,
                              sealed=self._box.encrypt(p.value))  # fmt: skip
        try:
            await self._records.set(p.instance_id, secret)
        except TooManySecrets:
            raise InvalidParams(
                f"instance {p.instance_id} holds {MAX_SECRETS} secrets, the most it may: "
                "delete one first",
                field="$.name",
            ) from None
        await self._changed(p.instance_id, p.name)
        return SecretInfo(name=p.name, hosts=p.hosts, header=p.header, format=p.format)

    @handles(SECRETS_LIST)
    async def secrets_list(self, p: SecretListParams, c: Caller) -> SecretList:
        await self._access.instance_exists(c, p.instance_id)
        return SecretList(secrets=await self._records.infos(p.instance_id))

    @handles(SECRETS_DELETE)
    async def secrets_delete(self, p: SecretRef, c: Caller) -> SecretDeleted:
        await self._access.instance_exists(c, p.instance_id)
        deleted = await self._records.delete(p.instance_id, p.name)
        if deleted:
            await self._changed(p.instance_id, p.name)
        return SecretDeleted(deleted=deleted)

    async def _changed(self, instance_id: str, name: str) -> None:
        """Running machines follow, as for ``env.set`` (after the store write, so whoever
        handles the event reads the new records): the event names the variable, no value."""
        await self._bus.publish(
            EnvChanged(event_id=new_event_id(), instance_id=instance_id, name=name)
        )
