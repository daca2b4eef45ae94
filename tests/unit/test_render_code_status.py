"""The CLI's daemon column marks behind, ahead and diverged code differently: "newer code
available" is said only of a daemon *behind* the platform, never of one ahead of it."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.models import CodeStatus, Machine
from contracts.status import MachineStatus
from fleet.cli.render import machine_detail, machines_table


def machine(n: int, code: CodeStatus, *, status: MachineStatus = MachineStatus.READY) -> Machine:
    now = datetime.now(UTC)
    return Machine(
        id=f"m-{n:016x}", instance_id=f"i-{n:016x}", provider="local", status=status,
        status_reason="", daemon_version="0.1.0", daemon_git_sha=f"{n:040x}",
        code_status=code, update_available=code == "behind" and status is MachineStatus.READY,
        created_at=now, updated_at=now,
    )  # fmt: skip


def daemon_cells(text: str) -> list[str]:
    return [line.split()[6] for line in text.splitlines()[1:] if line.startswith("m-")]


def test_each_code_status_has_its_mark_and_legend() -> None:
    rows = [machine(1, "behind"), machine(2, "ahead"), machine(3, "diverged"),
            machine(4, "current"), machine(5, "unknown")]  # fmt: skip
    text = machines_table(rows)
    assert [c[-1] for c in daemon_cells(text)] == ["*", "+", "~", "0", "0"]
    assert "* newer code available" in text
    assert "+ runs code newer than the platform's" in text
    assert "~ runs code from another branch" in text


def test_ahead_is_never_called_an_update() -> None:
    text = machines_table([machine(2, "ahead")])
    assert "newer code available" not in text
    assert "refresh-code" not in machine_detail(machine(2, "ahead"))
    assert "(code ahead)" in machine_detail(machine(2, "ahead"))
    assert "refresh-code" in machine_detail(machine(1, "behind"))


def test_a_failed_machine_behind_gets_no_update_mark() -> None:
    text = machines_table([machine(1, "behind", status=MachineStatus.FAILED)])
    assert daemon_cells(text) == ["0.1.0@0000000"]
    assert "newer code available" not in text
