"""The pure parts of a claim from the gvisor warm pool: the slot's files moved into the
machine's directory, its spec's mount sources with them (the places inside unchanged), and the
name its sandbox runs under recorded until that sandbox ends. On real runsc sandboxes:
tests/integration/test_gvisor_pool.py."""

from __future__ import annotations

import json
from pathlib import Path

from providers.gvisor.runsc import (
    BUNDLE,
    PID_FILE,
    STARTED_AS_FILE,
    container_id,
    forget_sandbox,
    running_container,
    sandbox_pid,
    started_as,
)
from providers.local.gvisor_pool import move_in


def test_a_claim_moves_the_slots_files_and_spec_and_records_the_name_it_runs_under(
    tmp_path: Path,
) -> None:
    slot = tmp_path / "pool" / "gvisor" / "owner" / "pslot"
    machine = tmp_path / "machines" / "m-a"
    for d in ("home", "code", "gvisor-token", "gvisor/rootfs", "gvisor-bin"):
        (slot / d).mkdir(parents=True)
    (slot / "daemon.log").write_text("supervisor: pool_up\n")
    (slot / "root-uid").write_text("200007")  # root's host uid goes with the machine
    spec = {
        "root": {"path": str(slot / "gvisor" / "rootfs")},
        "mounts": [
            {"destination": "/usr", "type": "bind", "source": "/usr"},
            {"destination": str(slot / "home"), "type": "bind", "source": str(slot / "home")},
            {"destination": "/code", "type": "bind", "source": str(slot / "code")},
            {"destination": "/run/fleet-token", "type": "bind",
             "source": str(slot / "gvisor-token")},
            {"destination": "/run/fleet-bin", "type": "bind", "source": str(slot / "gvisor-bin")},
        ],
    }  # fmt: skip
    (slot / "gvisor" / "config.json").write_text(json.dumps(spec))
    # Before the claim, the machine's own name would be the one looked for.
    assert running_container(machine, "m-a") == container_id("m-a")

    move_in(slot, machine, container_id("pslot"))

    assert not [p for p in slot.iterdir()]  # nothing of it left in the slot's directory
    assert (machine / "daemon.log").read_text() == "supervisor: pool_up\n"
    moved = json.loads((machine / BUNDLE / "config.json").read_text())
    assert moved["root"]["path"] == str(machine / BUNDLE / "rootfs")
    assert [(m["destination"], m["source"]) for m in moved["mounts"]] == [
        ("/usr", "/usr"),
        (str(slot / "home"), str(machine / "home")),  # the place inside its processes know
        ("/code", str(machine / "code")),
        ("/run/fleet-token", str(machine / "gvisor-token")),
        ("/run/fleet-bin", str(machine / "gvisor-bin")),  # its sudo
    ]
    assert (machine / "root-uid").read_text() == "200007"
    assert started_as(machine, "m-a") == (container_id("pslot"), slot / BUNDLE)
    assert running_container(machine, "m-a") == container_id("pslot")
    # A pid whose command line names another bundle is not its sandbox.
    (machine / BUNDLE / PID_FILE).write_text(str(1))
    assert sandbox_pid(machine) is None
    # Its sandbox ended (a stop, a pause): the machine's own name from then on.
    forget_sandbox(machine / BUNDLE)
    assert not (machine / BUNDLE / STARTED_AS_FILE).exists()
    assert not (machine / BUNDLE / PID_FILE).exists()
    assert running_container(machine, "m-a") == container_id("m-a")
