"""``hostRequirements`` of nothing is refused (issue 45, finding 2): the engine reads a limit
of 0 as none at all, so 0 CPUs or 0 bytes would be a machine with no limit."""

from __future__ import annotations

import pytest

from contracts.errors import EnvironmentInvalid
from controlplane.policy import Limits, within
from environments import devcontainer as dc


@pytest.mark.parametrize(
    "requirements",
    [
        '{"memory": "0"}',
        '{"memory": "0gb"}',
        '{"memory": "0.0000000001gb"}',
        '{"cpus": 0}',
        '{"cpus": -2}',
        '{"memory": "-1gb"}',
        '{"cpus": 0, "memory": "0"}',
    ],
)
def test_host_requirements_of_nothing_are_refused(requirements: str) -> None:
    doc = f'{{"image": "b", "hostRequirements": {requirements}}}'.encode()
    with pytest.raises(EnvironmentInvalid, match="hostRequirements"):
        dc.parse(doc, ".devcontainer.json", workspace="/w")


@pytest.mark.parametrize(("cpus", "memory_mb"), [(0, None), (None, 0), (-1, None), (0.0, 0)])
def test_within_never_gives_nothing(cpus: float | None, memory_mb: int | None) -> None:
    assert within(Limits(), cpus, memory_mb) is None


@pytest.mark.parametrize("bad", [{"memory_mb": 0}, {"cpus": 0.0}, {"pids": 0}, {"cpus": -1.0}])
def test_limits_of_nothing_cannot_be_made(bad: dict[str, float]) -> None:
    """No provider can hand the engine a 0 (unlimited): no such Limits exists."""
    with pytest.raises(ValueError, match="positive"):
        Limits(**bad)  # type: ignore[arg-type]
