"""FLEET_PREVIEW_ORIGIN: a template with {port} and {machine} in its host, matched exactly."""

from __future__ import annotations

import pytest

from services.common.preview_origin import parse_preview_origin
from services.common.settings import Settings

MID = "m-0123456789abcdef"


def test_a_host_names_one_port_of_one_machine() -> None:
    origin = parse_preview_origin("http://{port}-{machine}.preview.localhost:8080/")
    assert origin is not None
    assert origin.url(MID, 3000) == f"http://3000-{MID}.preview.localhost:8080/"
    assert origin.match(f"3000-{MID}.preview.localhost:8080") == (MID, 3000)
    assert origin.match(f"3000-{MID}.PREVIEW.localhost:8080") == (MID, 3000)  # hosts: any case
    tail = ".preview.localhost:8080"
    for host in (f"3000-{MID}.preview.localhost", f"0-{MID}{tail}", f"70000-{MID}{tail}",
                 f"x.3000-{MID}{tail}", f"3000-{MID}{tail}.evil", "127.0.0.1:8080",
                 f"3000-m-XYZ{tail}", f"03000-{MID}{tail}"):  # fmt: skip
        assert origin.match(host) is None, host


@pytest.mark.parametrize("bad", ["http://preview.localhost", "ftp://{port}-{machine}.x",
                                 "http://{port}-{machine}.x/path", "{port}-{machine}.x",
                                 "http://{port}{port}-{machine}.x"])  # fmt: skip
def test_a_template_that_names_no_port_of_no_machine_stops_the_process(bad: str) -> None:
    with pytest.raises(ValueError, match="FLEET_PREVIEW_ORIGIN"):
        Settings(preview_origin=bad)


def test_empty_is_previews_by_path_only() -> None:
    assert parse_preview_origin("") is None
