"""A gateway method that is one daemon method on the caller's machine, or one host method of
its host (``MethodSpec.passes``): which method, how its params map, and the check, at import,
that they do."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from contracts.rpc.jsonrpc import AnySpec, Params


@dataclass(frozen=True)
class PassThrough:
    """A gateway method that is one daemon method on the caller's machine, served with no
    handler of its own (``MethodSpec.passes``): the caller's access to the machine named by its
    params' ``machine_id`` is checked, the machine woken as ``method``'s ``wakes`` says, then
    ``method`` is called with the params' other fields, each by the same name unless
    ``rename`` maps it (gateway field -> daemon field), and its result is the answer.

    ``look``: a look (a console polls it): it neither counts as activity for auto-stop nor
    wakes the machine. ``takes_s``: how long the daemon may take to answer (None: the
    gateway's daemon timeout), which the gateway waits with its margin on top.

    ``host``: ``method`` is a host method (contracts/host/rpc.py), asked of the machine's host
    with every field, ``machine_id`` among them, once the caller's access to the machine is
    checked (as a read of it: the machine is neither woken nor needs to run)."""

    method: AnySpec
    rename: tuple[tuple[str, str], ...] = ()
    look: bool = False
    takes_s: float | None = None
    host: bool = False

    def params_of(self, params: Params) -> Params:
        """``method``'s params from the gateway's (validated against each other at import)."""
        names = dict(self.rename)
        fields = {names.get(f, f): getattr(params, f) for f in params.__struct_fields__}
        if not self.host:  # a daemon serves one machine: its own
            del fields[names.get(_MACHINE_ID, _MACHINE_ID)]
        made: Params = self.method.params(**fields)
        return made

    def check(self, spec: AnySpec) -> None:
        """TypeError unless ``spec`` (the gateway's) maps onto ``method``: a ``machine_id``,
        every other field one of the daemon's, every field the daemon needs given, and the
        daemon's result its answer."""
        names = dict(self.rename)
        mine = {names.get(f, f) for f in spec.params.__struct_fields__}
        if not self.host:
            mine -= {_MACHINE_ID}
        theirs = {f.name for f in msgspec.structs.fields(self.method.params)}
        needed = {f.name for f in msgspec.structs.fields(self.method.params) if f.required}
        problems = [
            *([] if _MACHINE_ID in spec.params.__struct_fields__ else ["no machine_id"]),
            *(f"{f} is not a field of {self.method.name}'s params" for f in sorted(mine - theirs)),
            *(f"{self.method.name} needs {f}" for f in sorted(needed - mine)),
            *([] if spec.result is self.method.result
              else [f"its result is not {self.method.name}'s"]),
        ]  # fmt: skip
        if problems:
            raise TypeError(f"{spec.name} cannot pass through to {self.method.name}: "
                            + "; ".join(problems))  # fmt: skip


#: The field of a pass-through's params that names its machine.
_MACHINE_ID = "machine_id"
