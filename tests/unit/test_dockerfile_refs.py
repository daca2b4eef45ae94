"""The images a Dockerfile names, as the builder reads them (environments/dockerfile.py),
and an image reference as the engine normalises it (the provisioner's image_policy.py): what
the images an instance may use are checked against."""

from __future__ import annotations

import pytest

from contracts.errors import ImageRefused
from environments.dockerfile import image_refs
from services.provisioner.builds.image_policy import ImagePolicy, parse

LAYER = "fleetd-layer:m-0123456789abcdef"


@pytest.mark.parametrize(
    ("dockerfile", "args", "named"),
    [
        ("FROM busybox AS one\nCOPY --from=one /a /b\nFROM scratch\n", {}, ["busybox"]),
        (f"FROM --platform=linux/amd64 {LAYER}\n", {}, [LAYER]),
        (f"ARG L={LAYER}\nFROM $L\n", {}, [LAYER]),
        ("ARG L=busybox\nFROM ${L}\n", {"L": LAYER}, [LAYER]),  # the build's argument wins
        (f"ARG X\nFROM ${{X:-{LAYER}}}\n", {}, [LAYER]),
        (f"ARG X=a\nFROM ${{X:+{LAYER}}}\n", {}, [LAYER]),
        (f"FROM scratch\nCOPY \\\n  --from={LAYER} / /\n", {}, [LAYER]),
        (f"# escape=`\nFROM scratch\nCOPY `\n  --from={LAYER} / /\n", {}, [LAYER]),
        (f"FROM scratch\nRUN --mount=type=bind,from={LAYER},target=/x true\n", {}, [LAYER]),
        # A stage's own ARG, not the global one of the same name, fills its --from.
        (f"ARG X=busybox\nFROM scratch\nARG X={LAYER}\nCOPY --from=$X / /\n", {}, [LAYER]),
        ("FROM busybox\n# FROM " + LAYER + "\nCOPY --from=0 / /\n", {}, ["busybox"]),
    ],
)
def test_every_image_a_dockerfile_names(dockerfile: str, args: dict[str, str],
                                        named: list[str]) -> None:  # fmt: skip
    assert image_refs(dockerfile.encode(), args) == named


@pytest.mark.parametrize("dockerfile", ["FROM $NOWHERE\n", "FROM scratch\nCOPY --from=${Y} / /\n",
                                        "ARG G=x\nFROM scratch\nCOPY --from=$G / /\n"])  # fmt: skip
def test_a_variable_the_file_does_not_give_is_refused(dockerfile: str) -> None:
    with pytest.raises(ImageRefused):
        image_refs(dockerfile.encode(), {})


def test_references_as_the_engine_reads_them() -> None:
    for ref in (LAYER, f"docker.io/library/{LAYER}", f"index.docker.io/library/{LAYER}"):
        assert parse(ref).canonical == LAYER
    assert parse("docker.io/fleetd-env:abc").canonical == "fleetd-env:abc"
    assert parse("busybox").canonical == "busybox:latest"
    assert parse("localhost:5000/x/y:1").canonical == "localhost:5000/x/y:1"
    assert parse("ghcr.io/a/b@sha256:00").canonical == "ghcr.io/a/b@sha256:00"


def test_what_is_refused_by_its_name_alone() -> None:
    policy = ImagePolicy("i-1", frozenset({"m-own"}), frozenset())
    for ref in (LAYER, f"docker.io/library/{LAYER}", "sha256:" + "a" * 64, "a" * 64, "abc123",
                "fleetd-layer:m-own@sha256:" + "0" * 64):  # fmt: skip
        with pytest.raises(ImageRefused):
            policy.private(ref)
    for ref in (
        "busybox",
        "node:22",
        "fleetd-machine:abc",
        "fleetd-base:abc",
        "fleetd-layer:m-own",
    ):
        assert policy.private(ref) is None
    assert policy.private("fleetd-env:abc") == parse("fleetd-env:abc")  # its ID tells
