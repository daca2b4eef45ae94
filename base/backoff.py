"""The one backoff rule: exponential, capped, with optional jitter; or a schedule of steps.

Every retry loop in fleetd (event redelivery, stored publishes, a daemon's connect and
reports, restarting a background process or a service) waits ``backoff_s(attempt, ...)``
before its next try, so they all grow and cap the same way. A loop whose waits follow a
published schedule rather than a doubling (a webhook's: 5 s, 5 min, 30 min, 2 h, ...) gives
the schedule as ``steps``: the same rule with its waits from a table, the last one repeated.
"""

from __future__ import annotations

import random


def backoff_s(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, jitter: bool = True,
    steps: tuple[float, ...] = (),
) -> float:  # fmt: skip
    """The wait after failed try number ``attempt`` (1, 2, ...): ``base`` doubling up to ``cap``;
    with ``steps``, the ``attempt``-th of them instead (the last one once they run out).

    With ``jitter`` the wait is drawn from its upper half ("equal jitter"): many processes that
    failed together (a NATS restart) spread out instead of retrying in lockstep, and no wait is
    ever shorter than half the rule's.
    """
    if steps:
        delay = steps[min(max(attempt, 1), len(steps)) - 1]
    else:
        # The doubling stops long before a float would overflow (2.0 ** 1024): past it, the cap.
        delay = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 64))
    return random.uniform(0.5, 1.0) * delay if jitter else delay
