"""A Dockerfile's ``ADD`` of anything remote is refused before any build (issue 45, finding 3):
the engine's builder fetches it from the host's own network namespace, where the build
network's rules never see it. Every spelling the builder reads as a remote source counts."""

from __future__ import annotations

import pytest

from contracts.errors import EnvironmentRefused
from environments.dockerfile import base_images, check_sources

REMOTE = [
    "FROM b\nADD http://169.254.169.254/latest/meta-data/ /m\n",
    "FROM b\nadd https://127.0.0.1:8080/secret /s\n",
    "FROM b\n  Add   HTTP://10.0.0.1/x /x\n",
    "FROM b\nADD --chmod=644 http://127.0.0.1/x /x\n",
    "FROM b\nADD --chown=1:1 --checksum=sha256:ab https://h/x /x\n",
    "FROM b\nADD \\\n  --chmod=644 \\\n  http://127.0.0.1/x \\\n  /x\n",
    "FROM b\nADD \\\n# a comment inside the continuation\n  http://127.0.0.1/x /x\n",
    "# escape=`\nFROM b\nADD `\n  http://127.0.0.1/x /x\n",
    '# syntax=docker/dockerfile:1\n# escape=`\nFROM b\nADD ["http://127.0.0.1/x", "/x"]\n',
    'FROM b\nADD ["https://h/x", "/x"]\n',
    "FROM b\nADD git@github.com:o/r.git /src\n",
    "FROM b\nADD ssh://git@h/o/r.git /src\n",
    "FROM b\nADD git://h/o/r.git /src\n",
    "FROM b\nADD ht\\tp://127.0.0.1/x /x\n",
    'FROM b\nADD "http://127.0.0.1/x" /x\n',
    "FROM b\nARG U=http://169.254.169.254/\nADD $U /x\n",
    "FROM b\nADD ${U:-http://127.0.0.1/} /x\n",
    "FROM b\nADD local.txt http://127.0.0.1/x /d/\n",
    "FROM b\nONBUILD ADD http://127.0.0.1/x /x\n",
    "FROM b\nonbuild add https://h/x /x\n",
]


@pytest.mark.parametrize("text", REMOTE)
def test_a_remote_add_source_is_refused(text: str) -> None:
    with pytest.raises(EnvironmentRefused) as err:
        check_sources(text.encode(), "Dockerfile")
    assert "ADD" in err.value.message
    assert "Dockerfile:" in err.value.message  # names the file and the line
    assert (err.value.data or {})["properties"] == ["ADD"]


LOCAL = [
    "FROM b\nADD app.tar.gz /opt/\nCOPY . /src\n",
    "FROM b\nADD --chown=1:1 a b /d/\n",
    'FROM b\nADD ["a b.txt", "/d/"]\n',
    "FROM b\nRUN echo http://example.com\nCOPY x /y\n",
    "FROM b\nLABEL url=https://example.com\n",
    "FROM b\n# ADD http://example.com/x /x\nRUN true\n",
    "FROM b\nRUN echo \\\n  ADD http://example.com/x\n",
]


@pytest.mark.parametrize("text", LOCAL)
def test_local_sources_and_urls_elsewhere_are_fine(text: str) -> None:
    check_sources(text.encode(), "Dockerfile")


def test_the_line_named_is_the_instructions_first() -> None:
    text = b"FROM b\nRUN true\nADD \\\n  http://127.0.0.1/x /x\n"
    with pytest.raises(EnvironmentRefused, match=r"Dockerfile:3"):
        check_sources(text, "Dockerfile")


def test_an_images_onbuild_triggers_are_held_to_the_same_rule() -> None:
    with pytest.raises(EnvironmentRefused, match="ONBUILD"):
        check_sources(b"ADD http://127.0.0.1/x /x", "image b's ONBUILD", onbuild=True)


def test_base_images_are_read_as_the_builder_substitutes_them() -> None:
    text = (b"ARG REG=r.example\nARG TAG\nARG V=1\nFROM $REG/a:${TAG:-9} AS one\n"
            b"FROM one\nFROM --platform=linux/amd64 ${REG}/b:${V} AS two\nFROM scratch\n"
            b"ARG LATE=x\nFROM c:${LATE:-d}\n")  # fmt: skip
    assert base_images(text, {"V": "2"}) == ["r.example/a:9", "r.example/b:2", "c:d"]
