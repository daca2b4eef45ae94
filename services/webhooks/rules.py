"""What an attempt's answer means: delivered, another attempt (when), or the last one; and
whether the endpoint is disabled by it.

- a 2xx is success (in time: the POST's timeout bounds it), anything else a failure: no answer,
  a redirect, a 4xx, a 5xx;
- a failure is attempted again after the schedule's next wait (``FLEET_WEBHOOK_RETRY_STEPS_S``:
  5 s, 5 min, 30 min, 2 h, 5 h, 10 h, the last repeated) for ``FLEET_WEBHOOK_RETRY_BUDGET_S``
  (a day) from the event's first attempt, the day's end being the last; an answer's
  ``Retry-After`` waits longer, never past that end. The waits are the one backoff rule's
  (``base/retry.py``), resumed from the record, since a delivery's attempts outlive a process;
- ``410 Gone`` disables the endpoint at once, as the Standard Webhooks specification says,
  and so does a failure once every attempt has failed for ``FLEET_WEBHOOK_DISABLE_AFTER_S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from base.retry import Backoff, Retries
from contracts.gateway.webhooks import Outcome
from controlplane.settings import Settings


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    #: Seconds until the next attempt (``retrying`` only).
    next_in_s: float | None = None
    #: Why the endpoint is disabled by this attempt ('': it is not).
    disable: str = ""


def delivered(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


class _Instant:
    """The clock of one judgement: time stands still while it is made, so what is left of the
    budget is exactly what the record says (the system's clock would move on a little)."""

    def now(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("a judgement waits for nothing")


def next_wait_s(settings: Settings, failed_before: int, elapsed_s: float) -> float | None:
    """The wait after the attempt that failed after ``failed_before`` failed ones, the first
    made ``elapsed_s`` ago; None: that was the last."""
    waits = Retries(Backoff(steps=settings.webhook_retry_steps, jitter=False),
                    budget_s=settings.webhook_retry_budget_s - elapsed_s, clip=True,
                    failed=failed_before, clock=_Instant())  # fmt: skip
    return waits.next_wait_s()


def judge(
    settings: Settings, *, status: int | None, retry_after_s: float | None, failed_before: int,
    first_at_ms: int, now_ms: int, failing_since_ms: int | None,
) -> Verdict:  # fmt: skip
    """The verdict on an attempt (``status`` None: no answer)."""
    if delivered(status):
        return Verdict("delivered")
    if status == 410:
        return Verdict("failed", disable="the endpoint answered 410 Gone")
    since = failing_since_ms or now_ms
    if now_ms - since >= settings.webhook_disable_after_s * 1000:
        day = datetime.fromtimestamp(since / 1000, UTC).isoformat(timespec="seconds")
        return Verdict("failed", disable=f"every attempt failed since {day}")
    elapsed_s = (now_ms - (first_at_ms or now_ms)) / 1000
    wait = next_wait_s(settings, failed_before, elapsed_s)
    if wait is None:
        return Verdict("failed")
    if retry_after_s is not None and retry_after_s > wait:
        wait = min(retry_after_s, settings.webhook_retry_budget_s - elapsed_s)
    return Verdict("retrying", next_in_s=wait)
