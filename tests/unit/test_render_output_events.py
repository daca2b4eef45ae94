"""How the CLI shows output events and a lifecycle command's end (fleet/cli/render.py):
``fleet machines events`` lists an output event's lines under it; a pipeline's progress shows
its last line."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.bus.events import EnvironmentBuildOutput, LifecycleOutput, LifecycleRan
from fleet.cli.render import describe, event_line

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_an_output_events_lines_follow_it_and_its_description_ends_with_the_last() -> None:
    out = LifecycleOutput(event_id="e1", machine_id="m-1", occurred_at=AT,
                          stage="postCreateCommand", command="npm ci",
                          lines=["added 3 packages", "done"], dropped=4)  # fmt: skip
    assert event_line(7, out) == (
        "     7 03:04:05.678 m-1  lifecycle-output         postCreateCommand 2 line(s) "
        "(4 dropped before them)\n        | added 3 packages\n        | done"
    )
    assert describe(out) == (
        "lifecycle-output         postCreateCommand 2 line(s) (4 dropped before them): done"
    )
    build = EnvironmentBuildOutput(event_id="e2", machine_id="m-1", lines=["Step 1/2 : FROM b"])
    assert describe(build) == "environment-build-output 1 line(s): Step 1/2 : FROM b"


def test_a_lifecycle_commands_end_says_how_it_ended() -> None:
    ran = LifecycleRan(event_id="e3", machine_id="m-1", stage="postStartCommand",
                       command="make serve", exit_code=2, timed_out=False, output="")  # fmt: skip
    assert describe(ran) == "lifecycle-ran            postStartCommand `make serve` exited 2"
    timed = LifecycleRan(event_id="e4", machine_id="m-1", stage="onCreateCommand",
                         command="sleep 9999", exit_code=-9, timed_out=True, output="")  # fmt: skip
    assert describe(timed).endswith("onCreateCommand `sleep 9999` timed out")
