"""What a service's start imports, in a fresh interpreter each: the MCP SDK (most of a second
of imports) only when something speaks MCP (the gateway's first ``/mcp`` request, a run with an
MCP bridge), not at every start of the gateway and codemode, which `fleet up` waits for."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
print(sorted({m.split(".")[0] for m in sys.modules} & {"mcp", "mcp_types"}))
"""


@pytest.mark.parametrize("module", ["services.gateway.__main__", "services.codemode.__main__"])
def test_a_service_start_imports_no_mcp_sdk(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "[]", out


def test_the_probe_sees_the_sdk_where_it_is_imported() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "controlplane.mcp_tools"], capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "mcp" in out, out
