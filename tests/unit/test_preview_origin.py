"""FLEET_PREVIEW_ORIGIN: a template with {port} and {machine} in its host, matched exactly, or
one origin all previews share; by default an origin per port on *.localhost."""

from __future__ import annotations

import pytest

from controlplane.preview_origin import parse_preview_origin
from controlplane.settings import Settings

MID = "m-0123456789abcdef"


def test_a_host_names_one_port_of_one_machine() -> None:
    origin = parse_preview_origin("http://{port}-{machine}.preview.localhost:8080/")
    assert origin.url(MID, 3000) == f"http://3000-{MID}.preview.localhost:8080/"
    assert origin.match(f"3000-{MID}.preview.localhost:8080") == (MID, 3000)
    assert origin.match(f"3000-{MID}.PREVIEW.localhost:8080") == (MID, 3000)  # hosts: any case
    tail = ".preview.localhost:8080"
    for host in (f"3000-{MID}.preview.localhost", f"0-{MID}{tail}", f"70000-{MID}{tail}",
                 f"x.3000-{MID}{tail}", f"3000-{MID}{tail}.evil", "127.0.0.1:8080",
                 f"3000-m-XYZ{tail}", f"03000-{MID}{tail}"):  # fmt: skip
        assert origin.match(host) is None, host


@pytest.mark.parametrize("bad", [
    "http://{port}.preview.localhost", "ftp://{port}-{machine}.x", "http://{port}-{machine}.x/path",
    "{port}-{machine}.x", "http://{port}{port}-{machine}.x", "http://{machine}.x",
    "http://{machine}-{port}.x#a", "http://{host}.x", "http://",
])  # fmt: skip
def test_a_template_that_names_no_port_of_no_machine_stops_the_process(bad: str) -> None:
    with pytest.raises(ValueError, match="FLEET_PREVIEW_ORIGIN"):
        Settings(preview_origin=bad)


def test_by_default_each_port_of_each_machine_is_an_origin_on_the_preview_listener() -> None:
    settings = Settings(port=8080, preview_port=8081)
    assert settings.preview.url(MID, 3000) == f"http://{MID}-3000.localhost:8081/"
    assert settings.preview.match(f"{MID}-3000.localhost:8081") == (MID, 3000)
    assert settings.preview.match("127.0.0.1:8081") is None
    assert settings.preview.match("127.0.0.1:8080") is None


def test_an_origin_without_names_is_shared_by_every_preview_under_its_path() -> None:
    origin = parse_preview_origin("https://previews.example.com/")
    assert origin.url(MID, 3000) == f"https://previews.example.com/machines/{MID}/ports/3000/"
    assert origin.match("previews.example.com") is None  # by path only


def test_the_preview_listener_is_never_the_consoles() -> None:
    with pytest.raises(ValueError, match="FLEET_PREVIEW_PORT"):
        Settings(port=8080, preview_port=8080)
