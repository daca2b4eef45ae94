"""The host methods' waits (contracts/host/rpc.py ``HOST_WAITS``): each names a host method,
and one that waits out a command's time has params that carry it."""

from __future__ import annotations

from contracts.host import rpc as h


def test_each_wait_is_a_host_methods_and_a_commands_time_is_in_its_params() -> None:
    names = {spec.name: spec for spec in h.HOST_METHODS}
    assert set(h.HOST_WAITS) <= set(names)
    for name, wait in h.HOST_WAITS.items():
        if wait.with_command:
            assert "timeout_s" in names[name].params.__struct_fields__, name
    assert h.wait_of(h.DROP_SNAPSHOT) == h.HostWait()  # an RPC's, unless it says otherwise
    assert h.wait_of(h.EXEC_AS_ROOT).with_command
