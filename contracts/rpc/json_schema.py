"""JSON Schemas of the contract's types, as every document generated from contracts/ has them.

msgspec describes a type by its docstring as the running Python gives it, and Python 3.13
dedents a docstring as it compiles it where 3.11 keeps its indentation: the same source gave
two documents. Every description here is ``inspect.cleandoc``'s, the same on every Python.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec


def schema_components(
    types: Iterable[Any], *, ref_template: str
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """``msgspec.json.schema_components``, each description cleaned."""
    schemas, components = msgspec.json.schema_components(types, ref_template=ref_template)
    return tuple(_clean(s) for s in schemas), _clean(components)


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _clean(v)
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node
