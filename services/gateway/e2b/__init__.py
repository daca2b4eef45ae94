"""The E2B front: E2B's control API, envd's and the code interpreter's, on a listener of the
gateway's own, each call translated into fleetd's methods (docs/e2b.md). Offers ``E2bFront``."""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = ["E2bFront"]

if TYPE_CHECKING:
    from services.gateway.e2b.front import E2bFront
else:
    __getattr__ = lazy_front(__name__, {"front": ("E2bFront",)})
