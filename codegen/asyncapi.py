"""The committed AsyncAPI document, ``docs/asyncapi.json``: ``contracts.bus.asyncapi``'s document
in a stable text form (the reference pages and the TypeScript SDK are made from it too)."""

from __future__ import annotations

import json
from typing import Any

from codegen.generated import REPO
from contracts.bus.asyncapi import asyncapi_document

DOCUMENT_PATH = REPO / "docs" / "asyncapi.json"


def render(doc: dict[str, Any] | None = None) -> str:
    """The committed form (of fleetd's document unless ``doc``): stable key order, two-space
    indent, a final newline."""
    return (
        json.dumps(asyncapi_document() if doc is None else doc, indent=2, ensure_ascii=False) + "\n"
    )
