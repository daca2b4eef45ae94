"""A desktop action as the xdotool command that carries it out (argv, never a shell).

Each action is one ``xdotool`` run (a few milliseconds): its arguments are numbers the
contract bounded, button numbers and key names the contract's pattern allows; typed text goes
in on stdin (``type --file -``), so nothing a caller types is ever an argument or a shell word.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.daemon import desktop as dd

_BUTTONS = {"left": "1", "middle": "2", "right": "3"}
#: X's wheel: buttons 4 (up), 5 (down), 6 (left), 7 (right), one notch a click.
_WHEEL = {(0, -1): "4", (0, 1): "5", (-1, 0): "6", (1, 0): "7"}
#: Key names agents send that X spells otherwise (Anthropic's computer tool uses xdotool's
#: names, and models often write these).
_KEY_ALIASES = {
    "enter": "Return", "return": "Return", "esc": "Escape", "escape": "Escape",
    "backspace": "BackSpace", "tab": "Tab", "space": "space", "delete": "Delete",
    "del": "Delete", "pageup": "Prior", "page_up": "Prior", "pagedown": "Next",
    "page_down": "Next", "home": "Home", "end": "End", "up": "Up", "down": "Down",
    "left": "Left", "right": "Right", "cmd": "super", "command": "super", "win": "super",
    "meta": "super", "control": "ctrl", "option": "alt", "insert": "Insert",
}  # fmt: skip
#: Between the characters xdotool types, in ms (its default, 12, types 80 characters a
#: second; 0 can outrun a busy browser's input queue).
TYPE_DELAY_MS = "4"


@dataclass(frozen=True)
class Step:
    """One xdotool run: its arguments, what goes in on its stdin, and where the mouse is after
    it (None: where it was)."""

    args: list[str]
    stdin: bytes | None = None
    at: tuple[int, int] | None = None
    #: A pause instead of a run (``wait``), in seconds.
    sleep_s: float = 0.0


def key_names(keys: str) -> list[str]:
    """Each chord of ``keys`` with its names as X spells them."""
    chords = []
    for chord in keys.split():
        chords.append("+".join(_KEY_ALIASES.get(k.lower(), k) for k in chord.split("+")))
    return chords


def outside(action: dd.Action, width: int, height: int) -> tuple[int, int] | None:
    """A point of ``action`` that is off a ``width`` x ``height`` screen, else None."""
    points: list[tuple[int | None, int | None]] = []
    if isinstance(action, dd.Move | dd.Click | dd.Scroll):
        points.append((action.x, action.y))
    elif isinstance(action, dd.Drag):
        points += [(action.x, action.y), (action.to_x, action.to_y)]
    for x, y in points:
        if x is not None and y is not None and not (x < width and y < height):
            return x, y
    return None


def step(action: dd.Action) -> Step:
    """The xdotool run that carries out ``action``."""
    match action:
        case dd.Move(x=x, y=y):
            return Step(["mousemove", "--sync", str(x), str(y)], at=(x, y))
        case dd.Click():
            move = _move_to(action.x, action.y)
            at = (action.x, action.y) if action.x is not None and action.y is not None else None
            return Step([*move, "click", "--repeat", str(action.count), "--delay", "80",
                         _BUTTONS[action.button]], at=at)  # fmt: skip
        case dd.Press(button=button, down=down):
            return Step(["mousedown" if down else "mouseup", _BUTTONS[button]])
        case dd.Drag():
            return Step(["mousemove", "--sync", str(action.x), str(action.y), "mousedown", "1",
                         "mousemove", "--sync", str(action.to_x), str(action.to_y),
                         "mouseup", "1"], at=(action.to_x, action.to_y))  # fmt: skip
        case dd.Scroll():
            return _scroll(action)
        case dd.Type(text=text):
            return Step(["type", "--delay", TYPE_DELAY_MS, "--file", "-"],
                        stdin=text.encode("utf-8"))  # fmt: skip
        case dd.Key(keys=keys, hold_ms=0):
            return Step(["key", "--delay", "20", *key_names(keys)])
        case dd.Key(keys=keys, hold_ms=hold):
            names = key_names(keys)
            return Step(["keydown", *names, "sleep", f"{hold / 1000:g}", "keyup",
                         *reversed(names)])  # fmt: skip
        case dd.Wait(ms=ms):
            return Step([], sleep_s=ms / 1000)
    raise AssertionError(f"an action of no known type: {action!r}")


def _move_to(x: int | None, y: int | None) -> list[str]:
    return [] if x is None or y is None else ["mousemove", "--sync", str(x), str(y)]


def _scroll(action: dd.Scroll) -> Step:
    args = _move_to(action.x, action.y)
    for amount, axis in ((action.dy, (0, 1)), (action.dx, (1, 0))):
        if amount:
            sign = 1 if amount > 0 else -1
            button = _WHEEL[(axis[0] * sign, axis[1] * sign)]
            args += ["click", "--repeat", str(abs(amount)), "--delay", "10", button]
    at = (action.x, action.y) if action.x is not None and action.y is not None else None
    return Step(args, at=at)
