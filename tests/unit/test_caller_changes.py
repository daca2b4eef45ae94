"""A process's changes to callers: watchers hear each one, and only a change written here is
announced (one heard from another process is not sent back out)."""

from __future__ import annotations

from controlplane.security.caller_changes import CallerChanges


async def test_a_written_change_is_announced_and_a_heard_one_is_not() -> None:
    changes = CallerChanges()
    seen: list[int] = []
    sent: list[int] = []

    async def announce() -> None:
        sent.append(changes.version)

    with changes.watching(lambda: seen.append(changes.version)), changes.announcing(announce):
        await changes.written()
        changes.heard()
    assert seen == [1, 2]  # each change, counted before the watcher hears it
    assert sent == [1]
    await changes.written()  # outside: neither watched nor announced, only counted
    assert (seen, sent, changes.version) == ([1, 2], [1], 3)
