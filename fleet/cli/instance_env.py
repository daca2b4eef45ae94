"""`fleet instances environment`: show or set what an instance's machines are made from."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import msgspec

from fleet.cli.common import SubAction, UsageError, command, emit

if TYPE_CHECKING:
    from contracts.gateway.environments import Environment
    from fleet.client import FleetClient

Args = argparse.Namespace


def instance_commands(g: SubAction) -> None:
    e = command(g, "environment", _environment, "show or set what its machines are made from")
    e.add_argument("instance_id")
    kind = e.add_mutually_exclusive_group()
    kind.add_argument("--image", help="an image of the machines' Docker engine")
    kind.add_argument(
        "--dockerfile",
        metavar="REPO:PATH[:CONTEXT]",
        help="a Dockerfile in one of its repos (REPO: its checkout path)",
    )
    kind.add_argument(
        "--devcontainer", metavar="REPO[:PATH]", help="a devcontainer.json in one of its repos"
    )
    kind.add_argument("--auto", action="store_true",
                      help="a repo's devcontainer.json, else the default")  # fmt: skip


def parse_environment(a: Args) -> Environment | None:
    """The environment the flags name (None: --auto)."""
    from contracts.gateway.environments import DevcontainerSource, DockerfileSource, Environment

    try:
        if a.image:
            return Environment(image=a.image)
        if a.dockerfile:
            parts = a.dockerfile.split(":")
            if len(parts) not in (2, 3):
                raise UsageError("--dockerfile takes REPO:PATH[:CONTEXT]")
            return Environment(dockerfile=DockerfileSource(
                repo=parts[0], path=parts[1], context=parts[2] if len(parts) == 3 else "."
            ))  # fmt: skip
        if a.devcontainer:
            repo, _, path = a.devcontainer.partition(":")
            return Environment(devcontainer=DevcontainerSource(repo=repo, path=path or None))
    except (ValueError, msgspec.ValidationError) as exc:
        raise UsageError(str(exc)) from None
    return None


def describe(env: Environment | None) -> str:
    return env.describe() if env is not None else "auto (a repo's devcontainer.json, else default)"


async def _environment(c: FleetClient, a: Args) -> int:
    if a.auto or a.image or a.dockerfile or a.devcontainer:
        got = await c.set_environment(a.instance_id, parse_environment(a))
    else:
        got = await c.get_environment(a.instance_id)
    return emit(a, got, lambda: describe(got.environment))
