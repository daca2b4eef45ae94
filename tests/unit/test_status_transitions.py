"""Machine status transitions: forward along the pipeline, never backwards (but for a setup
begun again, from its daemon's start: a machine whose daemon went away during its setup is
booting again), terminal at the end."""

from __future__ import annotations

import itertools

import pytest

from contracts.status import ADVANCE_FROM, TERMINAL, MachineStatus, can_advance

S = MachineStatus

PIPELINE = [S.CREATED, S.PROVISIONING, S.BOOTING, S.SETTING_UP, S.PROBING, S.READY]
LIVE = [*PIPELINE, S.UNRESPONSIVE]
ALL = list(MachineStatus)


def test_every_status_has_a_rule() -> None:
    assert set(ADVANCE_FROM) == set(MachineStatus)


def test_status_values_are_the_wire_strings() -> None:
    assert [s.value for s in PIPELINE] == [
        "created",
        "provisioning",
        "booting",
        "setting-up",
        "probing",
        "ready",
    ]


@pytest.mark.parametrize(("current", "target"), list(itertools.pairwise(PIPELINE)))
def test_happy_path_advances_step_by_step(current: MachineStatus, target: MachineStatus) -> None:
    assert can_advance(current, target)


@pytest.mark.parametrize("status", [s for s in ALL if s is not S.CREATED])
def test_status_admits_itself_for_redelivery(status: MachineStatus) -> None:
    assert can_advance(status, status)


def test_nothing_moves_a_machine_to_created() -> None:
    assert [s for s in ALL if can_advance(s, S.CREATED)] == []


#: A setup begun again: its daemon went away (the platform stopped during the setup, and its
#: provisioner started the daemon anew), and the new daemon's ready report sets it up.
SET_UP_AGAIN = {(S.SETTING_UP, S.BOOTING), (S.PROBING, S.BOOTING)}


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (PIPELINE[j], PIPELINE[i])
        for i, j in itertools.combinations(range(len(PIPELINE)), 2)
        if (PIPELINE[j], PIPELINE[i]) not in SET_UP_AGAIN
    ],
)
def test_pipeline_never_moves_backwards(current: MachineStatus, target: MachineStatus) -> None:
    assert not can_advance(current, target)


@pytest.mark.parametrize(("current", "target"), sorted(SET_UP_AGAIN))
def test_a_setup_begins_again_from_booting(current: MachineStatus, target: MachineStatus) -> None:
    assert can_advance(current, target)
    assert not can_advance(S.READY, target)  # a ready machine's new daemon: unresponsive


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (PIPELINE[i], PIPELINE[j])
        for i, j in itertools.combinations(range(len(PIPELINE)), 2)
        if j > i + 1
    ],
)
def test_pipeline_never_skips_a_stage(current: MachineStatus, target: MachineStatus) -> None:
    assert not can_advance(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.READY, S.SETTING_UP), (S.PROBING, S.SETTING_UP), (S.READY, S.PROVISIONING)],
)
def test_examples_of_backward_moves_are_refused(
    current: MachineStatus, target: MachineStatus
) -> None:
    assert not can_advance(current, target)


def test_ready_and_unresponsive_go_both_ways() -> None:
    assert can_advance(S.READY, S.UNRESPONSIVE)
    assert can_advance(S.UNRESPONSIVE, S.READY)


@pytest.mark.parametrize("target", [s for s in PIPELINE if s is not S.READY])
def test_unresponsive_does_not_reenter_the_pipeline(target: MachineStatus) -> None:
    assert not can_advance(S.UNRESPONSIVE, target)


@pytest.mark.parametrize("target", [s for s in PIPELINE if s is not S.READY])
def test_pipeline_statuses_cannot_become_unresponsive(target: MachineStatus) -> None:
    assert not can_advance(target, S.UNRESPONSIVE)


@pytest.mark.parametrize("current", LIVE)
def test_every_live_status_can_fail_or_be_archived(current: MachineStatus) -> None:
    assert can_advance(current, S.FAILED)
    assert can_advance(current, S.ARCHIVING)
    assert not can_advance(current, S.ARCHIVED)  # only once its files are gone


def test_terminal_statuses() -> None:
    assert frozenset({S.FAILED, S.ARCHIVING, S.ARCHIVED}) == TERMINAL


@pytest.mark.parametrize("target", ALL)
def test_failed_only_moves_to_archiving_or_to_a_stop(target: MachineStatus) -> None:
    """A failed machine is archived, or stopped on its way to a start (``machines.start``):
    never back into its pipeline by a late or repeated event."""
    assert can_advance(S.FAILED, target) == (target in {S.FAILED, S.ARCHIVING, S.STOPPING})


@pytest.mark.parametrize("target", ALL)
def test_archiving_only_moves_to_archived(target: MachineStatus) -> None:
    assert can_advance(S.ARCHIVING, target) == (target in {S.ARCHIVING, S.ARCHIVED})


@pytest.mark.parametrize("target", ALL)
def test_archived_never_moves(target: MachineStatus) -> None:
    assert can_advance(S.ARCHIVED, target) == (target is S.ARCHIVED)
