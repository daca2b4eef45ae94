"""The mark of a field that holds a credential, said once on its type, and where a type has one.

    value: Annotated[str, credential(min_length=1, max_length=4096)]

A credential is a secret that lets its holder act: a secret's value, a token, a ticket. Marked
on a method's params, the CLI never takes it from its command line (``fleet call``): argv is seen
by every user of the host (``ps``, ``/proc/<pid>/cmdline``) and kept in shell history. Marked on
a method's result, the method mints one, so it is no read (``reads``): the audit log records who
was given it (tests/fast/test_credential_methods.py). The audit log's redaction goes by field
names (``contracts.gateway.audit.REDACTIONS``), which cover these and more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import msgspec
from msgspec import inspect as mi

#: The key of ``msgspec.Meta(extra=...)`` that marks a credential.
CREDENTIAL: Final = "credential"


def credential(**constraints: Any) -> msgspec.Meta:
    """A ``msgspec.Meta`` with ``constraints`` (``min_length`` ...) that marks its field's type
    a credential."""
    return msgspec.Meta(**constraints, extra={CREDENTIAL: True})


def credential_paths(t: Any) -> list[str]:
    """The paths (``field.inner``, ``list[]``: wire names) of ``t``'s fields marked a
    credential, through nested Structs, lists, dicts and unions."""
    walked = _walk(mi.type_info(t), "", frozenset())
    return list(dict.fromkeys(path for path, marked in walked if marked))


def field_paths(t: Any) -> list[str]:
    """Every field's path in ``t``, as ``credential_paths`` spells them."""
    return list(dict.fromkeys(path for path, _ in _walk(mi.type_info(t), "", frozenset())))


def _walk(t: mi.Type, at: str, seen: frozenset[type]) -> Iterator[tuple[str, bool]]:
    if isinstance(t, mi.Metadata):
        yield from _walk(t.type, at, seen)
    elif isinstance(t, mi.StructType) and t.cls not in seen:
        for f in t.fields:
            path = f"{at}.{f.encode_name}" if at else f.encode_name
            yield path, _marked(f.type)
            yield from _walk(f.type, path, seen | {t.cls})
    elif isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        yield from _walk(t.item_type, f"{at}[]", seen)
    elif isinstance(t, mi.DictType):
        yield from _walk(t.value_type, f"{at}{{}}", seen)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield from _walk(member, at, seen)


def _marked(t: mi.Type) -> bool:
    if isinstance(t, mi.Metadata):
        return bool((t.extra or {}).get(CREDENTIAL)) or _marked(t.type)
    if isinstance(t, mi.UnionType):  # an optional credential: ``credential | None``
        return any(_marked(member) for member in t.types)
    return False
