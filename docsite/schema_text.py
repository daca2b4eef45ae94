"""JSON Schema (as msgspec and the OpenRPC/AsyncAPI generators write it) in a few words."""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/"


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if isinstance(ref, str) else None


def describe(schema: dict[str, Any], link: str = "") -> str:
    """``string, 1..100 chars``, ``Machine or null``, ``array of string``: Markdown for a table
    cell. ``link``: the page the named records are on (empty: this one)."""
    if (name := ref_name(schema)) is not None:
        return f"[{name}]({link}#{name.lower()})"
    if "anyOf" in schema:
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        text = " or ".join(describe(s, link) for s in kinds)
        return text + (" or null" if len(kinds) < len(schema["anyOf"]) else "")
    if "enum" in schema:
        return " \\| ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']!r}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + describe(schema.get("items", {}), link) + _bounds(schema, "items")
    if kind == "object" and "additionalProperties" in schema:
        inner = schema["additionalProperties"]
        value = describe(inner, link) if isinstance(inner, dict) else "any"
        return f"object of {value}"
    return str(kind) + _bounds(schema, "chars" if kind == "string" else "")


def _bounds(schema: dict[str, Any], unit: str) -> str:
    parts: list[str] = []
    lo = schema.get("minLength", schema.get("minItems", schema.get("minimum")))
    hi = schema.get("maxLength", schema.get("maxItems", schema.get("maximum")))
    if "exclusiveMinimum" in schema:
        parts.append(f"> {schema['exclusiveMinimum']}")
    if lo is not None and hi is not None:
        parts.append(f"{lo}..{hi}" if lo != hi else f"exactly {lo}")
    elif lo is not None:
        parts.append(f">= {lo}")
    elif hi is not None:
        parts.append(f"<= {hi}")
    if parts and unit:
        parts[-1] += f" {unit}"
    if "pattern" in schema:
        parts.append(f"`{schema['pattern']}`".replace("|", "\\|"))
    return (", " + ", ".join(parts)) if parts else ""


def default_text(schema: dict[str, Any]) -> str:
    if "default" not in schema or schema["default"] is None:
        return ""
    value = schema["default"]
    return f"`{value}`" if not isinstance(value, str) else f'`"{value}"`'


def record_table(name: str, schema: dict[str, Any], link: str = "") -> list[str]:
    """A record (an object schema) as a heading and a field table."""
    out = [f"### {name}", ""]
    if schema.get("description"):
        out += [cell(schema["description"]), ""]
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        out += [f"{describe(schema, link)}", ""]
        return out
    required = set(schema.get("required", []))
    out += ["| field | type | required | default |", "|---|---|---|---|"]
    for field, sub in props.items():
        req = "yes" if field in required else ""
        out.append(f"| `{field}` | {describe(sub, link)} | {req} | {default_text(sub)} |")
    return [*out, ""]


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")
