"""Codemode's ``machine.code_run``: ``machines.code.run`` on the run's machine, a machine tool
like ``machine.exec`` (its ``machineId`` the run's, never the code's), sent to the gateway that
started the run, whose dispatcher checks it with the run's caller. Its rights on the whole
stack: tests/integration/test_codemode_code_run.py."""

from __future__ import annotations

import ast
from typing import Any, cast

import pytest

from contracts.errors import InvalidParams
from services.codemode.providers import GatewayCaller, MachineProvider

MID = "m-00000000000000aa"


class _Gateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        self.calls.append((method, params))
        return {"results": [{"text/plain": "42", "isMain": True}]}


async def test_code_run_is_machines_code_run_on_the_runs_machine() -> None:
    gateway = _Gateway()
    machine = MachineProvider(cast(GatewayCaller, gateway), MID)
    got = await machine.call("code_run", ["x + 1"], {"context_id": "c1", "timeoutS": 5})
    assert got["results"] == [{"text/plain": "42", "isMain": True}]
    await machine.call("code_run", [], {"code": "y", "language": "bash"})
    assert gateway.calls == [
        ("machines.code.run", {"code": "x + 1", "contextId": "c1", "timeoutS": 5,
                               "machineId": MID}),
        ("machines.code.run", {"code": "y", "language": "bash", "machineId": MID}),
    ]  # fmt: skip
    # The machine is the run's: one the code names is not the one asked.
    await machine.call("code_run", ["1"], {"machine_id": "m-00000000000000bb"})
    assert gateway.calls[-1][1]["machineId"] == MID
    with pytest.raises(InvalidParams):
        await machine.call("code_run", ["1", None, None, 5, None, "extra"], {})


async def test_code_run_is_in_the_machines_stubs() -> None:
    stubs = await MachineProvider(cast(GatewayCaller, _Gateway()), MID).describe()
    tree = ast.parse(stubs)
    (fn,) = [n for n in ast.walk(tree)
             if isinstance(n, ast.AsyncFunctionDef) and n.name == "code_run"]  # fmt: skip
    names = [a.arg for a in (*fn.args.args, *fn.args.kwonlyargs)]
    assert "code" in names
    assert not {"machineId", "machine_id"} & set(names)
