"""Logging: one JSON object per line in production, readable console lines in dev."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from base.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    before = structlog.get_config()  # the suite's (tests/conftest.py), not structlog's default
    yield
    structlog.configure(**before)
    structlog.contextvars.clear_contextvars()


def test_prod_writes_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("prod", "info", service="prober")
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(machine_id="m-0000000000000001"):
        log.info("machine.probed", attempt=2)
    log.debug("hidden")  # below the level
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("probe.crashed")
    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "machine.probed"
    assert (first["level"], first["service"], first["attempt"]) == ("info", "prober", 2)
    assert first["machine_id"] == "m-0000000000000001"
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exception"]
    assert "machine_id" not in second


def test_dev_writes_console_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("dev", "debug", service="gateway")
    structlog.get_logger("test").debug("gateway.listening", url="http://x")
    line = capsys.readouterr().err.strip()
    assert "gateway.listening" in line
    assert "url=http://x" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
