"""The auth callout's own metrics, in the process's registry (``FLEET_METRICS_PORT``).

- ``fleet_auth_callouts_total{outcome}``: authorization requests answered: ``allowed``,
  ``refused`` (the credentials were checked and refused), ``failed`` (the check itself failed:
  Redis down, a bug; refused too), ``bad_request`` (not a valid request; the server times out);
- ``fleet_auth_refusals_total{reason}``: refusals by ``Refusal`` (a stable, closed set); a
  burst of ``wrong_token`` or ``not_machine_id`` is someone guessing;
- ``fleet_auth_callout_seconds``: time from the request's arrival to the answer.

Every labelled series exists at 0 from the start, so a refusal-rate query answers 0.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Histogram

from controlplane.process.metrics import Metrics

#: A Redis read is a millisecond or two; a slow answer holds up a machine's CONNECT.
CALLOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
CALLOUT_OUTCOMES = ("allowed", "refused", "failed", "bad_request")


class Refusal(StrEnum):
    """Why a machine's credentials were refused: the ``reason`` label, and the log's."""

    NOT_MACHINE_ID = "not_machine_id"
    NO_TOKEN = "no_token"  # noqa: S105 - a label, not a password
    UNKNOWN_MACHINE = "unknown_machine"
    REVOKED = "revoked"
    UNDECRYPTABLE = "undecryptable"
    WRONG_TOKEN = "wrong_token"  # noqa: S105 - a label, not a password


class CalloutMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.callouts = Counter(
            "fleet_auth_callouts", "Authorization requests the auth callout answered, by outcome.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "fleet_auth_refusals", "Machine credentials the auth callout refused, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.seconds = Histogram(
            "fleet_auth_callout_seconds", "Time to answer one authorization request.",
            buckets=CALLOUT_BUCKETS, registry=r,
        )  # fmt: skip
        self._outcomes = {o: self.callouts.labels(o) for o in CALLOUT_OUTCOMES}
        self._reasons = {r: self.refusals.labels(r.value) for r in Refusal}

    def answered(self, outcome: str, seconds: float, refusal: Refusal | None = None) -> None:
        self._outcomes[outcome].inc()
        if refusal is not None:
            self._reasons[refusal].inc()
        self.seconds.observe(seconds)
