"""The gateway's ``HostCalls`` in memory: a host method asked of the provisioner's own
``HostMethods`` through its dispatcher, encoded and decoded as the request on NATS is, without
the NATS hop (the real hop: tests/integration/test_hosts.py)."""

from __future__ import annotations

from contracts.models import Machine
from contracts.rpc.jsonrpc import MethodSpec, P, R, decode_result, encode_call
from services.provisioner.host_rpc_server import HostMethods


class InProcessHosts:
    def __init__(self, methods: HostMethods) -> None:
        self.methods = methods
        self._dispatcher = methods.dispatcher()

    async def __call__(self, spec: MethodSpec[P, R], params: P, *, machine: Machine | None = None,
                       host: str | None = None) -> R:  # fmt: skip
        answer = await self._dispatcher.handle(encode_call(spec, params, 1), None)
        assert answer is not None  # a request with an id is always answered
        return decode_result(spec, answer)
