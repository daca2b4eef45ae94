"""The CLI terminal's detach sequence (Enter ~ .), as in ssh."""

from __future__ import annotations

from fleet.cli.terminal import DetachKeys


def test_enter_tilde_dot_detaches_and_nothing_of_it_is_sent() -> None:
    keys = DetachKeys()
    assert keys.feed(b"ls\r") == (b"ls\r", False)
    assert keys.feed(b"~") == (b"", False)  # held back until the next key
    assert keys.feed(b".") == (b"", True)


def test_at_the_very_start_too_and_in_one_read() -> None:
    assert DetachKeys().feed(b"~.") == (b"", True)
    assert DetachKeys().feed(b"echo\n~.rest") == (b"echo\n", True)


def test_a_tilde_elsewhere_or_followed_by_another_key_goes_through() -> None:
    keys = DetachKeys()
    assert keys.feed(b"a~.") == (b"a~.", False)  # not at a line's start
    assert keys.feed(b"\r~x") == (b"\r~x", False)
    assert keys.feed(b"\r~~") == (b"\r~", False)  # ~~ sends one ~
    assert keys.feed(b".") == (b".", False)  # and the line no longer starts there
