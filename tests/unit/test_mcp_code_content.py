"""``machines.code.run``'s answer as an MCP tool result (``mcp_tools.code_content``): what a
model reads of it. Images are MCP image content (sent once: not again, in base64, in the
structured content), output and text results are text, and an error in the code is the tool's
error with its traceback free of colour codes."""

from __future__ import annotations

from mcp_types import ImageContent, TextContent

from contracts.daemon.code import CodeError, CodeRunResult
from controlplane.mcp_tools import code_content

PNG_B64 = "iVBORw0KGgo="


def _result(**kw: object) -> CodeRunResult:
    base: dict[str, object] = {"execution_count": 3, "results": [], "stdout": [], "stderr": [],
                               "error": None, "context_id": "default-python"}  # fmt: skip
    return CodeRunResult(**{**base, **kw})  # type: ignore[arg-type]


def test_output_results_and_images_are_the_content() -> None:
    got = code_content(_result(
        stdout=["a\n", "b\n"], stderr=["warn\n"],
        results=[{"image/png": PNG_B64, "text/plain": "<Figure>", "isMain": False},
                 {"text/plain": "42", "text/html": "<b>42</b>", "isMain": True},
                 {"application/json": {"a": 1}, "isMain": False}],
    ))  # fmt: skip
    assert not got.is_error
    texts = [c.text for c in got.content if isinstance(c, TextContent)]
    assert texts == ["[stdout]\na\nb\n", "[stderr]\nwarn\n", "42",
                     "[a result of application/json]"]  # fmt: skip
    (image,) = [c for c in got.content if isinstance(c, ImageContent)]
    assert (image.data, image.mime_type) == (PNG_B64, "image/png")
    assert got.content.index(image) == 2  # in the order the results came
    structured = got.structured_content or {}
    assert structured["results"][0] == {"text/plain": "<Figure>", "isMain": False}
    assert PNG_B64 not in str(structured)
    assert (structured["executionCount"], structured["contextId"]) == (3, "default-python")


def test_an_error_in_the_code_is_the_tools_error_without_colour_codes() -> None:
    error = CodeError(name="ZeroDivisionError", value="division by zero",
                      traceback=["\x1b[0;31mZeroDivisionError\x1b[0m  Traceback",
                                 "----> 1 \x1b[38;5;241m1\x1b[39m/0"])  # fmt: skip
    got = code_content(_result(error=error, truncated=True))
    assert got.is_error
    texts = [c.text for c in got.content if isinstance(c, TextContent)]
    assert texts == [
        "ZeroDivisionError: division by zero\nZeroDivisionError  Traceback\n----> 1 1/0",
        "[truncated: the output passed the answer's size cap]",
    ]
    assert (got.structured_content or {})["error"]["name"] == "ZeroDivisionError"
