"""``FleetClient`` on the gateway's dispatcher in memory: the fast layer's client.

Each call goes the way ``POST /rpc`` takes it, minus the socket (the client's public
``MockTransport``, answered by ``InMemoryGateway.handle``): the bearer secret is resolved
to a caller by the gateway's own ``caller_resolver`` (a secret it does not know is
``Unauthorized``, as the client reads a 401; no secret at all is refused too, where
``POST /rpc`` would still serve its public methods), then the JSON body is handled by the same
``Dispatcher`` the HTTP route calls, and the answer is decoded as the client decodes it. So a
test written against ``FleetClient`` runs here unchanged; the HTTP wiring itself (status codes,
headers, the bad-secret budget) is the integration tests' part.
"""

from __future__ import annotations

from contracts.rpc.jsonrpc import Dispatcher
from controlplane.security.tokens import TokenStore
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient, MockTransport, Request, Response
from services.gateway.auth import Caller, CallerResolver, caller_resolver

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

    def client(self, token: str | None = None) -> FleetClient:
        """A client with this bearer secret (by default the operator's admin token)."""
        secret = self.settings.admin_token if token is None else token
        return FleetClient(URL, secret, transport=MockTransport(self.handle, url=URL))

    async def handle(self, request: Request) -> Response:
        """``POST /rpc`` as the gateway answers it; no other route is served here (404)."""
        if (request.method, request.path) != ("POST", "/rpc"):
            return Response(404)
        caller = await self.resolve(request.token)
        if caller is None:
            return Response(401)
        answer = await self.dispatcher.handle(request.body, caller)
        assert answer is not None, "a call (it has an id) always gets an answer"
        return Response.of_json(answer)
