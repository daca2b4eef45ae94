"""The auth callout responder: answers ``$SYS.REQ.USER.AUTH`` for every NATS connection that is
not one of the static users.

A machine connects as user ``<machineId>`` with its token as password. The answer is a user JWT
bound to the services' account, allowing exactly that machine's subjects
(``jwt.machine_permissions``), if the machine exists, is not archived or revoked, and the token
matches the one the provisioner stored (encrypted) for it; otherwise an error, which the server
turns into an authorization violation for the client.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base.reply_server import ReplyServer
from contracts.bus import subjects
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.status import ARCHIVED_OR_ARCHIVING
from controlplane.process.metrics import Metrics
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from services.auth_callout import jwt
from services.auth_callout.callout_metrics import CalloutMetrics, Refusal

log = structlog.get_logger(__name__)

#: Where the server asks (nats-server ``AuthCalloutSubject``).
AUTH_SUBJECT = subjects.AUTH_CALLOUT
#: Replicas of the callout share the requests.
QUEUE_GROUP = "auth-callout"
#: Requests answered at once per process.
_CONCURRENCY = 256
#: What the server logs for a refused machine; the client only sees "Authorization Violation".
REFUSED = "machine credentials refused"


@dataclass(frozen=True)
class Decision:
    machine_id: str
    #: None: allowed.
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


class AuthCallout:
    def __init__(
        self, *, store: Store, box: SecretBox, issuer: jwt.Issuer, account: str,
        max_payload: int = jwt.DEFAULT_MACHINE_PAYLOAD, metrics: Metrics | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.max_payload = max_payload
        self.box = box
        self.issuer = issuer
        self.account = account
        # Without one (tests, tools) the counts go to a registry nobody scrapes.
        self.metrics = CalloutMetrics(metrics or Metrics())

    async def check(self, user: str, password: str) -> Decision:
        """Whether ``user``/``password`` are a live machine's id and token."""
        if len(user) != ID_LENGTH or not MACHINE_ID_RE.match(user):
            return Decision(user, Refusal.NOT_MACHINE_ID)
        if not password:
            return Decision(user, Refusal.NO_TOKEN)
        access = await self.store.machine_access(user)
        if access.sealed_token is None:
            return Decision(user, Refusal.UNKNOWN_MACHINE)
        if access.revoked or access.status in ARCHIVED_OR_ARCHIVING:
            return Decision(user, Refusal.REVOKED)
        try:
            expected = self.box.decrypt(access.sealed_token)
        except ValueError:
            log.error("callout.cannot_decrypt", machine_id=user)
            return Decision(user, Refusal.UNDECRYPTABLE)
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return Decision(user, Refusal.WRONG_TOKEN)
        return Decision(user)

    async def answer(self, request: jwt.AuthRequest) -> tuple[str, Decision]:
        """The signed authorization response to ``request``, and the decision it carries."""
        decision = await self.check(request.user, request.password)
        if decision.refusal is not None:
            log.warning(
                "callout.refused",
                user=request.user[:64],
                reason=decision.refusal.value,
                client_host=request.client_host,
                client_id=request.client_id,
            )
            return jwt.authorization_response(self.issuer, request, error=REFUSED), decision
        user_jwt = jwt.user_jwt(
            self.issuer,
            user_nkey=request.user_nkey,
            machine_id=decision.machine_id,
            account=self.account,
            max_payload=self.max_payload,
        )
        log.info(
            "callout.authorized",
            machine_id=decision.machine_id,
            client_host=request.client_host,
            client_id=request.client_id,
        )
        return jwt.authorization_response(self.issuer, request, jwt=user_jwt), decision

    async def _handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            request = jwt.parse_auth_request(msg.data.decode(errors="replace"))
        except jwt.JWTError as exc:
            # Without a valid request there is no one to address an answer to; the server
            # times out and refuses the client.
            log.error("callout.bad_request", error=str(exc))
            self.metrics.answered("bad_request", time.perf_counter() - started)
            return
        refusal: Refusal | None = None
        try:
            answer, decision = await self.answer(request)
            refusal = decision.refusal
            outcome = "allowed" if refusal is None else "refused"
        except Exception as exc:  # Redis down, a bug: refuse, never hang
            log.exception("callout.failed", error=repr(exc))
            answer = jwt.authorization_response(self.issuer, request, error="callout failed")
            outcome = "failed"
        with contextlib.suppress(nats.errors.Error):
            await msg.respond(answer.encode())
        seconds = time.perf_counter() - started
        self.metrics.answered(outcome, seconds, refusal)
        log.debug("callout.answered", outcome=outcome, ms=round(seconds * 1000, 2))

    @contextlib.asynccontextmanager
    async def serving(self, nc: NATS) -> AsyncIterator[None]:
        """Answer the server's requests on ``nc`` (a user of the callout account) while inside,
        each in a task (one slow Redis read does not hold up the connections behind it)."""
        async with ReplyServer(nc, AUTH_SUBJECT, self._handle, queue=QUEUE_GROUP,
                               concurrency=_CONCURRENCY, drain_s=5.0,
                               failed_event="callout.task_failed"):  # fmt: skip
            await nc.flush()
            log.info("callout.serving", account=self.account, issuer=self.issuer.public_key)
            yield
