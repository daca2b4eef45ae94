"""A host method (contracts/host_rpc.py) asked of a host's provisioners over NATS: one request to
``host.<hostId>.rpc``, one of the host's replicas answers. The gateway's ``HostClient`` and the
prober's boot watchdog (``HostLiveness``) both ask through ``call_host``."""

from __future__ import annotations

import itertools

import nats.errors
import structlog
from nats.aio.client import Client as NATS

from contracts import host_rpc as h, subjects
from contracts.errors import FleetError, HostUnavailable, NotFound, NotSupported
from contracts.jsonrpc import MethodSpec, P, R, decode_result, encode_call
from contracts.models import Machine

log = structlog.get_logger(__name__)


async def call_host(
    nc: NATS, host: str, spec: MethodSpec[P, R], params: P, timeout_s: float, *,
    request_id: int, machine_id: str | None = None,
) -> R:  # fmt: skip
    """``spec`` on ``host`` (``request_id``: the caller's count of its requests);
    HostUnavailable when none of its provisioners answers in time."""
    body = encode_call(spec, params, request_id)
    try:
        msg = await nc.request(subjects.host_rpc(host), body, timeout=timeout_s)
    except nats.errors.NoRespondersError:
        raise HostUnavailable(
            f"no provisioner of host {host} answers (the host is lost, or its provisioner "
            f"is down)" + (f": machine {machine_id} waits for it" if machine_id else ""),
            data={"hostId": host},
        ) from None
    except nats.errors.TimeoutError:
        raise HostUnavailable(
            f"host {host} did not answer within {timeout_s:g}s", data={"hostId": host}
        ) from None
    return decode_result(spec, msg.data)


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
