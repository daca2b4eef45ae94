"""Wake on access's rules as plain functions (services/gateway/rpc/wake.py): what a wake does next
for each status, which preview requests get the "waking" page, and that page."""

from __future__ import annotations

import pytest

from contracts.status import MachineStatus as S
from services.gateway.rpc.wake import (
    WAKING_PAGE_REFRESH_S,
    Step,
    next_step,
    waking_page,
    wants_waking_page,
)

STEPS = {
    S.READY: Step.READY,
    S.PAUSED: Step.RESUME,
    S.STOPPED: Step.START,
    S.STOPPING: Step.START,  # a start overtakes a stop under way
    S.PAUSING: Step.WAIT,  # paused first, then resumed
    S.RESUMING: Step.WAIT,
    S.BOOTING: Step.WAIT,
    S.SETTING_UP: Step.WAIT,
    S.PROBING: Step.WAIT,
    S.CREATED: Step.GIVE_UP,
    S.PROVISIONING: Step.GIVE_UP,
    S.FAILED: Step.GIVE_UP,
    S.UNRESPONSIVE: Step.GIVE_UP,
    S.LOST: Step.GIVE_UP,
    S.ARCHIVING: Step.GIVE_UP,
    S.ARCHIVED: Step.GIVE_UP,
}


def test_every_status_has_its_step() -> None:
    assert set(STEPS) == set(S)
    assert {s: next_step(s) for s in S} == STEPS


@pytest.mark.parametrize(
    ("method", "accept", "page"),
    [
        ("GET", "text/html,application/xhtml+xml,*/*;q=0.8", True),  # a browser's page load
        ("HEAD", "TEXT/HTML", True),
        ("GET", "*/*", False),  # curl, a script's fetch: held until the machine answers
        ("GET", "application/json", False),
        ("GET", "", False),
        ("POST", "text/html", False),  # a form's post is never answered by another page
    ],
)
def test_only_a_browsers_page_load_gets_the_waking_page(method: str, accept: str,
                                                       page: bool) -> None:  # fmt: skip
    assert wants_waking_page(method, accept) is page


def test_the_waking_page_reloads_itself_and_is_never_cached() -> None:
    resp = waking_page("m-<script>", "resuming")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.text is not None
    assert f'<meta http-equiv="refresh" content="{WAKING_PAGE_REFRESH_S}">' in resp.text
    assert "<script>" not in resp.text  # what it shows is escaped
