"""A code run's answer and its streamed parts (daemon/code/output.py): each thing the answer
keeps is one part, in order; what the cap leaves out of the answer is not a part either, so a
stream carries no more than the answer may."""

from __future__ import annotations

from contracts.daemon import code as dc
from daemon.code.output import ERROR_ROOM, RunOutput


def _parts(out: RunOutput, messages: list[tuple[str, dict[str, object]]]) -> list[dc.CodeRunPart]:
    return [p for kind, content in messages if (p := out.take(kind, content)) is not None]


def test_each_kept_message_is_a_part_in_order_and_the_answer_holds_the_same() -> None:
    out = RunOutput(1 << 20)
    parts = _parts(out, [
        ("execute_input", {"execution_count": 3}),
        ("stream", {"name": "stdout", "text": "a\n"}),
        ("display_data", {"data": {"text/plain": "fig"}}),
        ("stream", {"name": "stderr", "text": "warn\n"}),
        ("execute_result", {"data": {"text/plain": "42"}}),
        ("error", {"ename": "E", "evalue": "v", "traceback": ["tb"]}),
    ])  # fmt: skip
    assert [(p.seq, p.kind) for p in parts] == [
        (0, "stdout"), (1, "result"), (2, "stderr"), (3, "result"), (4, "error")
    ]  # fmt: skip
    answer = out.answer("default-python")
    assert [p.text for p in parts if p.kind == "stdout"] == answer.stdout == ["a\n"]
    assert [p.text for p in parts if p.kind == "stderr"] == answer.stderr == ["warn\n"]
    assert [p.result for p in parts if p.kind == "result"] == answer.results
    assert parts[-1].error == answer.error == dc.CodeError(name="E", value="v", traceback=["tb"])
    last = out.timed_out(5)  # the timeout's error comes last, as the answer's error
    assert (last.seq, last.kind, last.error) == (5, "error", out.answer("c").error)


def test_what_the_cap_leaves_out_of_the_answer_is_not_streamed() -> None:
    out = RunOutput(ERROR_ROOM + 100)
    big = {"image/png": "A" * 1000}
    parts = _parts(out, [
        ("stream", {"name": "stdout", "text": "x" * 50}),
        ("display_data", {"data": big}),  # does not fit: left out of both
        ("stream", {"name": "stdout", "text": "y" * 500}),  # cut to what fits
        ("stream", {"name": "stdout", "text": "z"}),  # no room left
    ])  # fmt: skip
    answer = out.answer("c")
    assert answer.truncated
    assert answer.results == []
    assert [p.kind for p in parts] == ["stdout", "stdout"]
    assert [p.text for p in parts] == answer.stdout
    assert set(answer.stdout[1]) == {"y"}
    assert len(answer.stdout[1]) < 500
