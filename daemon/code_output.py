"""One code run's answer, gathered from its kernel's IOPub messages within a size cap.

The answer travels in one NATS message, so what the code printed and displayed is counted as
it comes, in its encoded (JSON) size: past the cap a stream is cut, a result (an image, say)
that does not fit is left out, and the answer says ``truncated``. The error is always kept (its
traceback cut to fit): it is what a caller most needs.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import daemon_code as dc

_ENCODE = msgspec.json.Encoder()
#: The room always kept for the error and the answer's own fields.
ERROR_ROOM = 16 * 1024
#: A character costs at most this many bytes in JSON (a control character as ``\\u00XX``).
_WORST_CHAR = 6


class RunOutput:
    """What one execution said, in order, within ``room`` bytes of encoded answer."""

    def __init__(self, room: int) -> None:
        self.room = max(room - ERROR_ROOM, 0)
        self.results: list[dc.MimeBundle] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.error: dc.CodeError | None = None
        self.execution_count: int | None = None
        self.truncated = False

    def take(self, kind: str, content: dict[str, Any]) -> None:
        """One IOPub message of the execution (its type, its content)."""
        if kind == "stream":
            self._stream(content.get("name") == "stderr", str(content.get("text", "")))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            bundle: dc.MimeBundle = dict(content.get("data") or {})
            bundle[dc.IS_MAIN] = kind == "execute_result"
            if self._fits(bundle):
                self.results.append(bundle)
        elif kind == "execute_input":
            count = content.get("execution_count")
            self.execution_count = count if isinstance(count, int) else None
        elif kind == "error":
            self.error = error_of(content)

    def _fits(self, item: object) -> bool:
        size = len(_ENCODE.encode(item)) + 1
        if size > self.room:
            self.truncated = True
            return False
        self.room -= size
        return True

    def _stream(self, stderr: bool, text: str) -> None:
        to = self.stderr if stderr else self.stdout
        if self._fits(text):
            to.append(text)
        elif self.room > 0:  # what fits of it, counting each character at its worst
            to.append(text[: self.room // _WORST_CHAR])
            self.room = 0

    def answer(self, context_id: str) -> dc.CodeRunResult:
        return dc.CodeRunResult(
            execution_count=self.execution_count, results=self.results, stdout=self.stdout,
            stderr=self.stderr, error=_fitted(self.error), context_id=context_id,
            truncated=self.truncated,
        )  # fmt: skip


def error_of(content: dict[str, Any]) -> dc.CodeError:
    """Jupyter's ``error`` content (or an ``execute_reply``'s) as the answer's error."""
    tb = content.get("traceback") or []
    return dc.CodeError(name=str(content.get("ename", "Error")),
                        value=str(content.get("evalue", "")),
                        traceback=[str(line) for line in tb])  # fmt: skip


def _fitted(error: dc.CodeError | None) -> dc.CodeError | None:
    """The error within ERROR_ROOM: a long traceback keeps its last lines (where it was
    raised)."""
    if error is None:
        return None
    value = error.value[: ERROR_ROOM // (4 * _WORST_CHAR)]
    lines: list[str] = []
    room = ERROR_ROOM // 2
    for line in reversed(error.traceback):
        room -= len(line) * _WORST_CHAR + 4
        if room < 0:
            break
        lines.append(line)
    return dc.CodeError(name=error.name[:200], value=value, traceback=lines[::-1])
