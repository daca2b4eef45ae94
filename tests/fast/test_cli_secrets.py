"""`fleet secrets set|list|delete` against the in-memory gateway: the value comes from stdin or
a file (one newline dropped), never from argv, and no command prints it back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fleet.cli.common import UsageError
from fleet.cli.entry import parse
from fleet.client import FleetClient
from tests.fast.conftest import World

VALUE = "sk-live-0123456789"


async def run(fleet: FleetClient, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    args = parse(argv)
    assert await args.func(fleet, args) == 0
    return capsys.readouterr().out


async def test_set_reads_stdin_and_list_and_delete_never_print_the_value(
    world: World, fleet: FleetClient, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    i = (await world.instance()).id
    monkeypatch.setattr("sys.stdin", io.StringIO(VALUE + "\n"))
    out = await run(fleet, ["secrets", "set", "OPENAI_API_KEY", "--instance", i, "--host",
                            "api.openai.com", "--host", "*.openai.com"], capsys)  # fmt: skip
    assert (
        out.strip() == "set OPENAI_API_KEY for api.openai.com, *.openai.com "
        "(Authorization: Bearer {value})"
    )
    (stored,) = await world.store.secrets.stored(i)
    assert world.box.decrypt(stored.sealed) == VALUE
    table = await run(fleet, ["secrets", "list", "--instance", i], capsys)
    assert table.splitlines()[0].split() == ["NAME", "HOSTS", "HEADER", "FORMAT", "USES", "LAST",
                                             "USED"]  # fmt: skip
    assert "OPENAI_API_KEY  api.openai.com *.openai.com  Authorization" in table
    assert table.rstrip().endswith("0     never")
    listed = json.loads(await run(fleet, ["secrets", "list", "--instance", i, "--json"], capsys))
    assert [s["name"] for s in listed] == ["OPENAI_API_KEY"]
    assert VALUE not in table + json.dumps(listed)
    delete = ["secrets", "delete", "OPENAI_API_KEY", "--instance", i]
    assert (await run(fleet, delete, capsys)).strip() == "deleted"
    assert (await run(fleet, delete, capsys)).strip() == "no such secret"


async def test_set_reads_a_file_with_its_header_and_format(
    world: World, fleet: FleetClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    i = (await world.instance()).id
    path = tmp_path / "key"
    path.write_text(VALUE + "\r\n")
    await run(fleet, ["secrets", "set", "K", "--instance", i, "--host", "10.0.0.7:8443",
                      "--header", "X-Api-Key", "--format", "{value}", "--from-file",
                      str(path)], capsys)  # fmt: skip
    (stored,) = await world.store.secrets.stored(i)
    assert (stored.header, stored.format, world.box.decrypt(stored.sealed)) == (
        "X-Api-Key", "{value}", VALUE)  # fmt: skip
    args = parse(["secrets", "set", "K", "--instance", i, "--host", "a.example",
                  "--from-file", str(tmp_path / "missing")])  # fmt: skip
    with pytest.raises(UsageError, match="missing"):
        await args.func(fleet, args)


def test_a_value_on_the_command_line_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        parse(["secrets", "set", "K", VALUE, "--instance", "i-0000000000000001", "--host", "a.b"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        parse(["secrets", "set", "--help"])
    assert "never from the command line" in " ".join(capsys.readouterr().out.split())


async def test_fleet_call_takes_no_credential_from_the_command_line(
    world: World, fleet: FleetClient, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``fleet call secrets.set`` is no way around ``fleet secrets set``'s rule: a param its
    spec marks a credential is refused from ``-p`` and from the JSON argument alike, with the
    ways to give it, and nothing is sent; the params as JSON on stdin (``-``) are taken."""
    i = (await world.instance()).id
    rest = ["-p", f"instanceId={i}", "-p", "name=K", "-p", 'hosts=["api.example.com"]']
    for argv in (["call", "secrets.set", *rest, "-p", f"value={VALUE}"],
                 ["call", "secrets.set", json.dumps({"value": VALUE}), *rest]):  # fmt: skip
        args = parse(argv)
        with pytest.raises(UsageError) as refused:
            await args.func(fleet, args)
        said = str(refused.value)
        assert VALUE not in said
        for way in ("`value`", "fleet secrets set", "stdin", "fleet call secrets.set -"):
            assert way in said, said
    assert await world.store.secrets.stored(i) == []
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"value": VALUE})))
    out = await run(fleet, ["call", "secrets.set", "-", *rest], capsys)
    assert json.loads(out)["name"] == "K"
    assert VALUE not in out
    (stored,) = await world.store.secrets.stored(i)
    assert world.box.decrypt(stored.sealed) == VALUE
