"""In-memory stand-ins with the interfaces of the bus, the daemon client and the providers, for
the fast test layer (``tests/fast``). The store is the real ``Store`` on ``fakeredis``."""

from tests.fakes.bus import FakeBus, FakeNats
from tests.fakes.daemons import FakeDaemons, FakeMachine
from tests.fakes.providers import FakeProvider

__all__ = ["FakeBus", "FakeDaemons", "FakeMachine", "FakeNats", "FakeProvider"]
