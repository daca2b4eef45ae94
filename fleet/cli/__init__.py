"""The ``fleet`` command: its parser (built lazily, command by command), each command's
module, and what the terminal shows (tables, progress, a terminal joined to a session).

Offers ``main``, the console script (``python -m fleet`` runs it too).
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = ["main"]

if TYPE_CHECKING:
    from fleet.cli.entry import main
else:
    __getattr__ = lazy_front(__name__, {"entry": ("main",)})
