"""What the web console needs of the gateway besides ``/rpc`` and the streams: sign-in with
OpenID Connect (``/auth/*``) and the signed-in browser's cookie session and CSRF check. The
console's own files are ``services/gateway/static/``, served by ``services/gateway/http.py``.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "COOKIE",
    "OidcClient",
    "SignIn",
    "WebSessions",
    "add_auth_routes",
    "check_csrf",
    "public_url",
    "session_id",
]

if TYPE_CHECKING:
    from services.gateway.console.oidc import OidcClient
    from services.gateway.console.sign_in import SignIn, add_auth_routes, public_url
    from services.gateway.console.web_sessions import COOKIE, WebSessions, check_csrf, session_id
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "oidc": ("OidcClient",),
            "sign_in": (
                "SignIn",
                "add_auth_routes",
                "public_url",
            ),
            "web_sessions": (
                "COOKIE",
                "WebSessions",
                "check_csrf",
                "session_id",
            ),
        },
    )
