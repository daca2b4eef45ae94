"""`fleet webhooks ...` against the in-memory gateway: create prints the secret once, list
never does, deliveries show each attempt, rotate-secret and delete do what they say."""

from __future__ import annotations

import json

import pytest

from fleet.cli.entry import parse
from fleet.client import FleetClient
from tests.fast.conftest import World

URL = "https://93.184.215.14/hook"


async def run(fleet: FleetClient, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    args = parse(argv)
    assert await args.func(fleet, args) == 0
    return capsys.readouterr().out


async def test_the_webhooks_commands(
    world: World, fleet: FleetClient, capsys: pytest.CaptureFixture[str]
) -> None:
    i = (await world.instance()).id
    made = json.loads(await run(fleet, ["webhooks", "create", URL, "--instance", i, "--event",
                                        "machine.ready", "--json"], capsys))  # fmt: skip
    secret, hook = made["secret"], made["id"]
    assert secret.startswith("whsec_")
    assert made["events"] == ["machine.ready"]
    out = await run(fleet, ["webhooks", "create", URL + "/all", "--instance", i], capsys)
    assert "secret: whsec_" in out
    assert "(*)" in out
    table = await run(fleet, ["webhooks", "list", "--instance", i], capsys)
    assert table.splitlines()[0].split() == ["ID", "URL", "EVENTS", "STATE", "DESCRIPTION"]
    assert f"{hook}  {URL}  " in table
    assert "whsec_" not in table
    assert "queued webhook.test" in await run(fleet, ["webhooks", "test", hook], capsys)
    assert (await run(fleet, ["webhooks", "deliveries", hook], capsys)).startswith("1 waiting")
    rotated = await run(fleet, ["webhooks", "rotate-secret", hook], capsys)
    assert rotated.startswith("secret: whsec_")
    assert secret not in rotated
    assert (await run(fleet, ["webhooks", "delete", hook], capsys)).strip() == "deleted"
    platform = await run(fleet, ["webhooks", "list"], capsys)  # the platform's: none
    assert platform.strip().splitlines() == ["ID  URL  EVENTS  STATE  DESCRIPTION"]
