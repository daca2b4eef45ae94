"""The ids a command is given, checked before any call: a machine's or snapshot's for its shape
(a message saying what one looks like, not the API's field error), an instance's by its id or,
when no other instance has it, its name."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from contracts.ids import INSTANCE_ID_RE, MACHINE_ID_RE, SNAPSHOT_ID_RE, not_an_id
from contracts.models import Instance
from fleet.cli.common import UsageError

if TYPE_CHECKING:
    from fleet.client import FleetClient

#: The arguments (argparse's dests) that hold one id, and each one's kind.
_ID_ARGS: dict[str, tuple[re.Pattern[str], str]] = {
    "machine_id": (MACHINE_ID_RE, "m"),
    "snapshot_id": (SNAPSHOT_ID_RE, "s"),
}
#: The arguments that name one instance: its id, or its name.
_INSTANCE_ARGS = ("instance_id", "instance")


async def resolve_refs(c: FleetClient, args: argparse.Namespace) -> None:
    """Check the id arguments' shapes and turn an instance's name into its id, in ``args``."""
    for dest, (pattern, prefix) in _ID_ARGS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise UsageError(not_an_id(value, prefix))
    for dest in _INSTANCE_ARGS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and not INSTANCE_ID_RE.fullmatch(value):
            setattr(args, dest, instance_by_name(value, await c.list_instances()))


def instance_by_name(name: str, instances: list[Instance]) -> str:
    """The id of the one instance called ``name``; a UsageError saying why when there is not
    exactly one."""
    ids = [i.id for i in instances if i.name == name]
    if len(ids) == 1:
        return ids[0]
    if ids:
        raise UsageError(f"{len(ids)} instances are named {name!r} ({', '.join(ids)}): "
                         "give one's id")  # fmt: skip
    raise UsageError(f"no instance is named {name!r}, and " + not_an_id(name, "i"))


def same_name(made: Instance, instances: list[Instance]) -> list[str]:
    """The ids of the other instances that have ``made``'s name."""
    return [i.id for i in instances if i.name == made.name and i.id != made.id]
