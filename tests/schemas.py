"""Validators for the published API documents, from meta-schemas vendored in tests/data/.

The tests run offline, so every schema a meta-schema refers to is vendored too and registered
under its official URI (see tests/data/README.md for their sources and versions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT7

DATA = Path(__file__).parent / "data"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / name).read_text())
    return doc


def openrpc_validator() -> jsonschema.Draft7Validator:
    """The OpenRPC meta-schema; its JSON Schema parts point at meta.json-schema.tools."""
    json_schema = DRAFT7.create_resource(_load("json-schema-tools-meta-schema.json"))
    uris = ("https://meta.json-schema.tools", "https://meta.json-schema.tools/")
    registry: Registry[Any] = Registry().with_resources((uri, json_schema) for uri in uris)
    return jsonschema.Draft7Validator(_load("openrpc-meta-schema.json"), registry=registry)


def asyncapi_validator() -> jsonschema.Draft7Validator:
    """The AsyncAPI 3.0.0 schema (the self-contained "without-$id" variant)."""
    return jsonschema.Draft7Validator(_load("asyncapi-3.0.0-schema.json"))


def problems(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    """Every violation as "path: message", deepest cause first, for a readable failure."""
    out = []
    for err in validator.iter_errors(doc):
        leaf = min(err.context, key=lambda e: -len(e.absolute_path), default=err)
        path = "/".join(str(p) for p in leaf.absolute_path)
        out.append(f"{path}: {leaf.message[:300]}")
    return out
