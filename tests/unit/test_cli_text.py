"""What the CLI prints for the cases a new user met (issue 64): a failure reason of several
lines keeps the table one line per row, long text is clamped, the runtime is shown, and an id
that is not one is named as such (by the CLI and by the API, in the same words)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.bus.events import RepoConflict, SetupPushed
from contracts.gateway.types import InstanceRef, MachineRef
from contracts.models import Instance, Machine
from contracts.rpc.rpc_params import invalid_params
from contracts.status import MachineStatus
from fleet.cli.common import UsageError
from fleet.cli.refs import instance_by_name, same_name
from fleet.cli.render import CELL_WIDTH, describe, machine_detail, machines_table, table

NOW = datetime.now(UTC)
REASON = "setup failed:\nTraceback (most recent call last):\r\n  File x\n\nValueError: boom"


def machine(n: int, reason: str = "", **kw: object) -> Machine:
    return Machine(id=f"m-{n:016x}", instance_id=f"i-{n:016x}", provider="local",
                   status=MachineStatus.FAILED, status_reason=reason, created_at=NOW,
                   updated_at=NOW, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_reason_of_several_lines_keeps_one_line_per_row() -> None:
    text = machines_table([machine(1, REASON), machine(2, "x")])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].endswith("setup failed: ⏎ Traceback (most recent call last): ⏎ File x ⏎ "
                             "ValueError: boom")  # fmt: skip
    assert lines[2].startswith("m-0000000000000002")


def test_long_text_is_clamped_with_an_ellipsis() -> None:
    text = table([["a" * 500, "\x1b[31mred\x07"]], ["ONE", "TWO"])
    row = text.splitlines()[1]
    assert row.startswith("a" * (CELL_WIDTH - 1) + "…  ")
    assert "\x1b" not in row
    assert "\x07" not in row
    assert row.endswith(" [31mred")


def test_the_runtime_is_in_the_list_and_the_detail() -> None:
    gv = machine(1, runtime="gvisor", runtime_platform="ptrace")
    text = machines_table([gv, machine(2)])
    head, first, second = text.splitlines()
    assert head.split()[:5] == ["ID", "INSTANCE", "PROVIDER", "RUNTIME", "HOST"]
    assert first[head.index("RUNTIME") :].startswith("gvisor (ptrace)")
    assert second[head.index("RUNTIME") :].startswith("namespaces")
    assert "runtime   gvisor (ptrace)" in machine_detail(gv)
    detail = machine_detail(machine(3, REASON)).splitlines()
    assert detail[detail.index("status    failed: setup failed:") + 1].startswith(" " * 10)


def test_a_repo_that_did_not_reach_the_machine_is_shown_as_its_warning() -> None:
    warned = machine(1, "all readiness checks passed", setup_warning="repo src/app: not found")
    assert "warning   repo src/app: not found" in machine_detail(warned).splitlines()
    assert "warning" not in machine_detail(machine(2, "all readiness checks passed"))
    row = machines_table([warned]).splitlines()[1]
    assert row.endswith("all readiness checks passed (warning: repo src/app: not found)")


def test_the_setup_pushed_stage_names_a_repo_not_cloned() -> None:
    skipped = RepoConflict(path="src/app", reason="git clone x failed: y")
    pushed = SetupPushed(event_id="e1", machine_id="m-" + "1" * 16, occurred_at=NOW,
                         env_path="/h/.fleet/.env", env_bytes=136, repo_paths=[],
                         not_cloned=[skipped])  # fmt: skip
    assert describe(pushed) == (
        "setup-pushed             .env 136 B, 0 repo(s); not cloned: src/app: git clone x failed: y"
    )


def test_a_bad_id_is_named_by_what_one_looks_like_in_the_api_too() -> None:
    for ref, body, said in [
        (MachineRef, b'{"machineId": "m-nope"}', "machine id (they look like m-0123456789abcdef)"),
        (MachineRef, b'{"machineId": "m-0123456789abcdeX"}', "machine id (they look like m-"),
        (InstanceRef, b'{"instanceId": "demo"}', "an instance id (they look like i-0123456789"),
    ]:
        with pytest.raises(msgspec.ValidationError) as caught:
            msgspec.json.decode(body, type=ref)
        err = invalid_params(caught.value)
        assert said in err.message, err.message
        assert err.message.startswith("invalid params: `$.")


def test_other_errors_keep_msgspecs_words() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'{"machineId": 3}', type=MachineRef)
    assert invalid_params(caught.value).message == (
        "invalid params: Expected `str`, got `int` - at `$.machineId`"
    )


def instance(n: int, name: str) -> Instance:
    return Instance(id=f"i-{n:016x}", name=name, created_at=NOW)


def test_an_instance_by_its_name_when_it_is_the_only_one() -> None:
    xs = [instance(1, "demo"), instance(2, "other"), instance(3, "other")]
    assert instance_by_name("demo", xs) == "i-0000000000000001"
    with pytest.raises(UsageError, match="2 instances are named 'other' "
                       r"\(i-0000000000000002, i-0000000000000003\)"):  # fmt: skip
        instance_by_name("other", xs)
    with pytest.raises(UsageError, match="no instance is named 'nope', and nope is not an "
                       r"instance id \(they look like i-0123456789abcdef\)"):  # fmt: skip
        instance_by_name("nope", xs)
    assert same_name(xs[1], xs) == ["i-0000000000000003"]
    assert same_name(xs[0], xs) == []
