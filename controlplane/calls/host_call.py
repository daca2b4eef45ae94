"""A host method (contracts/host/rpc.py) asked of a host's provisioners over NATS: one request to
``host.<hostId>.rpc``, one of the host's replicas answers. The gateway's ``HostClient`` and the
prober's boot watchdog (``HostLiveness``) both ask through ``call_host``."""

from __future__ import annotations

import contextlib
import itertools
import time

import nats.errors
import structlog
from nats.aio.client import NO_RESPONDERS_STATUS, Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import Header

from contracts.bus import subjects
from contracts.errors import FleetError, HostUnavailable, NotFound, NotSupported
from contracts.host import rpc as h
from contracts.models import Machine
from contracts.rpc.jsonrpc import MethodSpec, P, R, decode_result, encode_call

log = structlog.get_logger(__name__)
#: A call asks the replica that takes it to say it works on it (``h.WORKING_ASK_HEADER``).
_ASK_WORKING = {h.WORKING_ASK_HEADER: "1"}


async def call_host(
    nc: NATS, host: str, spec: MethodSpec[P, R], params: P, timeout_s: float, *,
    request_id: int, machine_id: str | None = None, silence_s: float = h.WORKING_SILENCE_S,
) -> R:  # fmt: skip
    """``spec`` on ``host`` (``request_id``: the caller's count of its requests);
    HostUnavailable when none of its provisioners answers in time, or when the one that took
    the request stops telling it works on it (``silence_s``: it ended, and will not answer)."""
    body = encode_call(spec, params, request_id)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subjects.host_rpc(host), body, reply=inbox, headers=_ASK_WORKING)
        data = await _answer(sub, host, spec.name, timeout_s, silence_s)
    except nats.errors.NoRespondersError:
        raise HostUnavailable(
            f"no provisioner of host {host} answers (the host is lost, or its provisioner "
            f"is down)" + (f": machine {machine_id} waits for it" if machine_id else ""),
            data={"hostId": host},
        ) from None
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return decode_result(spec, data)


async def _answer(sub: Subscription, host: str, method: str, timeout_s: float,
                  silence_s: float) -> bytes:  # fmt: skip
    """The answer on ``sub``, past the replica's working notices (``h.WORKING_HEADER``): within
    ``timeout_s``, and, once a notice was heard, within ``silence_s`` of the last."""
    deadline = time.monotonic() + timeout_s
    heard = False
    while True:
        left = deadline - time.monotonic()
        wait = min(left, silence_s) if heard else left
        try:
            msg = await sub.next_msg(timeout=max(wait, 0.001))
        except nats.errors.TimeoutError:
            if heard and time.monotonic() < deadline:
                raise HostUnavailable(
                    f"host {host}'s provisioner stopped answering while it worked on {method} "
                    f"(it restarted or was killed): what it did is not known; ask again",
                    data={"hostId": host, "outcome": "unknown"},
                ) from None
            raise HostUnavailable(
                f"host {host} did not answer within {timeout_s:g}s", data={"hostId": host}
            ) from None
        headers = msg.headers or {}
        if headers.get(Header.STATUS) == NO_RESPONDERS_STATUS and not msg.data:
            raise nats.errors.NoRespondersError
        if h.WORKING_HEADER in headers:
            heard = True
            continue
        return msg.data


class HostLiveness:
    """Whether a machine's daemon runs, in its host's own words (``host.daemonRuns``)."""

    def __init__(self, nc: NATS, *, default_host_id: str, timeout_s: float) -> None:
        self._nc = nc
        self._default = default_host_id
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)

    async def daemon_runs(self, machine: Machine) -> bool | None:
        """True or False as its host says; None when its host cannot tell (no provisioner
        of it answers, its provider cannot say, the machine is not its any more)."""
        host = machine.host_id or self._default
        params = h.HostMachineParams(machine_id=machine.id)
        try:
            got = await call_host(self._nc, host, h.DAEMON_RUNS, params, self._timeout_s,
                                  request_id=next(self._ids), machine_id=machine.id)  # fmt: skip
        except (HostUnavailable, NotSupported, NotFound) as exc:
            log.info("boot.host_cannot_tell", machine_id=machine.id, host_id=host,
                     error=exc.message)  # fmt: skip
            return None
        except FleetError as exc:  # any other answer of its host: it could not look
            log.warning("boot.host_failed", machine_id=machine.id, host_id=host,
                        error=exc.message)  # fmt: skip
            return None
        except nats.errors.Error as exc:  # our own connection, reconnecting: asked again later
            log.info("boot.host_not_asked", machine_id=machine.id, error=repr(exc))
            return None
        return got.runs
