"""Who calls the gateway and what they may reach: the caller of a request (an admin token, a
personal access token, a signed-in browser's session) and its access to instances and
machines, events tickets, rate limits, and the audit log of what was done and refused.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "EVERYWHERE",
    "OPERATOR",
    "SESSION_PREFIX",
    "Access",
    "AuditLog",
    "BadSecrets",
    "CallLimits",
    "Caller",
    "CallerCache",
    "CallerNotices",
    "CallerResolver",
    "CallerRound",
    "EventTickets",
    "Reach",
    "SecretUseAudit",
    "audited",
    "caller_resolver",
    "check_local_repo",
    "current_caller",
    "default_instance",
    "may_read",
    "origin_of",
    "record_csrf",
    "record_unauthenticated",
    "scoped",
    "user_caller",
]

if TYPE_CHECKING:
    from services.gateway.auth.access import (
        EVERYWHERE,
        Access,
        Caller,
        Reach,
        check_local_repo,
        default_instance,
        scoped,
    )
    from services.gateway.auth.audit_log import AuditLog, audited, may_read, origin_of
    from services.gateway.auth.caller_cache import CallerCache
    from services.gateway.auth.caller_notices import CallerNotices
    from services.gateway.auth.callers import (
        OPERATOR,
        SESSION_PREFIX,
        CallerResolver,
        CallerRound,
        caller_resolver,
        current_caller,
        user_caller,
    )
    from services.gateway.auth.rate_limits import BadSecrets, CallLimits
    from services.gateway.auth.refusals_http import record_csrf, record_unauthenticated
    from services.gateway.auth.secret_use_audit import SecretUseAudit
    from services.gateway.auth.tickets import EventTickets
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "access": (
                "Access",
                "Caller",
                "EVERYWHERE",
                "Reach",
                "check_local_repo",
                "default_instance",
                "scoped",
            ),
            "audit_log": (
                "AuditLog",
                "audited",
                "may_read",
                "origin_of",
            ),
            "caller_cache": ("CallerCache",),
            "caller_notices": ("CallerNotices",),
            "callers": (
                "CallerRound",
                "CallerResolver",
                "OPERATOR",
                "SESSION_PREFIX",
                "caller_resolver",
                "current_caller",
                "user_caller",
            ),
            "rate_limits": (
                "BadSecrets",
                "CallLimits",
            ),
            "refusals_http": (
                "record_csrf",
                "record_unauthenticated",
            ),
            "secret_use_audit": ("SecretUseAudit",),
            "tickets": ("EventTickets",),
        },
    )
