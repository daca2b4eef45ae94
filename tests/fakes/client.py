"""``FleetClient`` on the gateway's dispatcher in memory: the fast layer's client.

Each call goes the way ``POST /rpc`` takes it, minus the socket: the bearer secret is resolved
to a caller by the gateway's own ``caller_resolver`` (a secret it does not know is
``Unauthorized``, as the client reads a 401; no secret at all is refused too, where
``POST /rpc`` would still serve its public methods), then the JSON body is handled by the same
``Dispatcher`` the HTTP route calls, and the answer is decoded as the client decodes it. So a
test written against ``FleetClient`` runs here unchanged; the HTTP wiring itself (status codes,
headers, the bad-secret budget) is the integration tests' part.
"""

from __future__ import annotations

from contracts.jsonrpc import Dispatcher, MethodSpec, P, R, decode_result, encode_call
from controlplane.settings import Settings
from controlplane.store import Store
from controlplane.tokens import TokenStore
from fleet.client import FleetClient
from services.gateway.access import Caller
from services.gateway.callers import CallerResolver, caller_resolver

#: The address an in-memory client names (in its error messages only: nothing listens).
URL = "memory://gateway"


class InMemoryGateway:
    """One gateway process's callers and dispatcher: its clients share its caller cache, as
    the clients of one gateway process do."""

    def __init__(self, dispatcher: Dispatcher[Caller], store: Store, settings: Settings) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self.resolve: CallerResolver = caller_resolver(
            settings.admin_token, TokenStore(store), store, settings.revocation_round_s
        )

    def client(self, token: str | None = None) -> InMemoryClient:
        """A client with this bearer secret (by default the operator's admin token)."""
        return InMemoryClient(self, self.settings.admin_token if token is None else token)


class InMemoryClient(FleetClient):
    def __init__(self, gateway: InMemoryGateway, token: str) -> None:
        super().__init__(URL, token)
        self.gateway = gateway

    async def _call_once(
        self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
    ) -> R:
        caller = await self.gateway.resolve(self._token)
        if caller is None:
            raise self._refused()
        body = encode_call(spec, params, next(self._ids))
        answer = await self.gateway.dispatcher.handle(body, caller)
        assert answer is not None, "a call (it has an id) always gets an answer"
        return decode_result(spec, answer)
