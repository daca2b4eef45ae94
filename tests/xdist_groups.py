"""``--dist loadgroup`` for this suite: the tests of one ``xdist_group`` run on one worker, one
at a time, and every other test is scheduled on its own, largest group first.

pytest-xdist 3.8's own loadgroup sees no group under pytest 9.2: it tags each test by renaming
``item._nodeid``, which pytest no longer reads (``Node.nodeid`` comes from ``item._id``), so the
controller never learns of the groups and spreads the Docker tests over every worker. Here the
workers write each grouped test's group to a file as they collect, and the controller's
scheduler reads them when it splits the collection into work units (all workers have collected
by then). tests/conftest.py wires it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

_DIR = pytest.StashKey[Path]()
_INPUT_KEY = "fleet_xdist_groups"


def groups_dir(config: pytest.Config) -> Path:
    """The controller's directory the workers write their groups to (made once)."""
    if _DIR not in config.stash:
        config.stash[_DIR] = Path(tempfile.mkdtemp(prefix="fleet-xdist-groups-"))
    return config.stash[_DIR]


def configure_node(node: Any) -> None:
    node.workerinput[_INPUT_KEY] = str(groups_dir(node.config))


def remove_groups_dir(config: pytest.Config) -> None:
    if _DIR in config.stash:
        shutil.rmtree(config.stash[_DIR], ignore_errors=True)


def record_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker: each grouped test's group, for the controller."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or _INPUT_KEY not in workerinput:
        return
    groups = {}
    for item in items:
        if (mark := item.get_closest_marker("xdist_group")) is not None:
            groups[item.nodeid] = str(mark.args[0] if mark.args else mark.kwargs["name"])
    path = Path(workerinput[_INPUT_KEY]) / f"{workerinput['workerid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)  # whole or absent


class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """A group is one work unit (one worker, in order); any other test is a unit of its own.
    xdist orders units by size (--loadscope-reorder, its default): the groups start first, so
    the longest serial chain is not left for last."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if "@" in nodeid:  # an xdist that tags node ids again (its own loadgroup)
            return nodeid.rsplit("@", 1)[-1]
        if self._groups is None:
            self._groups = {}
            for path in sorted(groups_dir(self.config).glob("*.json")):
                self._groups |= json.loads(path.read_text())
        return self._groups.get(nodeid, nodeid)
