"""One code run's answer, gathered from its kernel's IOPub messages within a size cap.

The answer travels in one NATS message, so what the code printed and displayed is counted as
it comes, in its encoded (JSON) size: past the cap a stream is cut, a result (an image, say)
that does not fit is left out, and the answer says ``truncated``. The error is always kept (its
traceback cut to fit): it is what a caller most needs. Each thing kept is also a part
(``CodeRunPart``) a streamed run publishes as it comes: the stream carries what the answer
holds, within the same cap.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.daemon import code as dc

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
        self._seq = 0

    def take(self, kind: str, content: dict[str, Any]) -> dc.CodeRunPart | None:
        """One IOPub message of the execution (its type, its content); the part it added to
        the answer, if any."""
        if kind == "stream":
            stderr = content.get("name") == "stderr"
            text = self._stream(stderr, str(content.get("text", "")))
            return None if text is None else self._part("stderr" if stderr else "stdout", text=text)
        if kind in ("display_data", "execute_result", "update_display_data"):
            bundle: dc.MimeBundle = dict(content.get("data") or {})
            bundle[dc.IS_MAIN] = kind == "execute_result"
            if not self._fits(bundle):
                return None
            self.results.append(bundle)
            return self._part("result", result=bundle)
        if kind == "execute_input":
            count = content.get("execution_count")
            self.execution_count = count if isinstance(count, int) else None
        elif kind == "error":
            self.error = error_of(content)
            return self._part("error", error=_fitted(self.error))
        return None

    def timed_out(self, timeout_s: float) -> dc.CodeRunPart:
        """The code ran past ``timeout_s`` and was interrupted: the answer's error says so
        (with the interrupt's traceback, where it was)."""
        self.error = dc.CodeError(
            name="TimeoutError",
            value=f"the code ran past its timeout of {timeout_s:g}s and was interrupted",
            traceback=self.error.traceback if self.error is not None else [],
        )
        return self._part("error", error=_fitted(self.error))

    def _part(self, kind: dc.CodePartKind, **what: Any) -> dc.CodeRunPart:
        self._seq += 1
        return dc.CodeRunPart(seq=self._seq - 1, kind=kind, **what)

    def _fits(self, item: object) -> bool:
        size = len(_ENCODE.encode(item)) + 1
        if size > self.room:
            self.truncated = True
            return False
        self.room -= size
        return True

    def _stream(self, stderr: bool, text: str) -> str | None:
        """What of ``text`` the answer keeps (None: nothing)."""
        to = self.stderr if stderr else self.stdout
        if not self._fits(text):
            if self.room <= 0:
                return None
            text = text[: self.room // _WORST_CHAR]  # what fits, each character at its worst
            self.room = 0
        to.append(text)
        return text

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
