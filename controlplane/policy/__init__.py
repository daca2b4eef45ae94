"""Platform policy: what the platform allows and decides, apart from how a provider carries it
out. Which runtimes a provider can run and which keep a machine's memory
(``runtimes``), a machine's resource limits and placement (``machine_limits``), how a daemon's
code relates to the platform's (``code_status``), what an instance's egress policy lets through
and why it refuses (``egress_rules``), and where a webhook may be sent (``webhook_rules``).

The services decide with these names without importing a provider; the providers carry the
decisions out (nftables, the DNS and egress proxies, cgroups, the engine) and import them too.
"""

from base.lazy_front import lazy_front

TYPE_CHECKING = False  # typing's, without importing typing

__all__ = [
    "DOCKER_RUNTIME",
    "CodeVersions",
    "Limits",
    "NameLookups",
    "NameRules",
    "Placement",
    "PlacementOf",
    "Refused",
    "Resolve",
    "Rules",
    "Target",
    "check",
    "decide",
    "engine_refusal",
    "keeps_memory",
    "on_host",
    "policy_refusal",
    "remote_host",
    "runsc_binary",
    "runtime_choice",
    "runtime_refusal",
    "too_old",
    "with_own",
    "within",
]

if TYPE_CHECKING:
    from controlplane.policy.code_status import CodeVersions
    from controlplane.policy.egress_rules import NameRules, decide, policy_refusal, remote_host
    from controlplane.policy.machine_limits import (
        Limits,
        Placement,
        PlacementOf,
        on_host,
        with_own,
        within,
    )
    from controlplane.policy.runtimes import (
        DOCKER_RUNTIME,
        choice as runtime_choice,
        engine_refusal,
        keeps_memory,
        refusal as runtime_refusal,
        runsc_binary,
        too_old,
    )
    from controlplane.policy.webhook_rules import (
        NameLookups,
        Refused,
        Resolve,
        Rules,
        Target,
        check,
    )
else:
    __getattr__ = lazy_front(
        __name__,
        {
            "code_status": ("CodeVersions",),
            "egress_rules": (
                "NameRules",
                "decide",
                "policy_refusal",
                "remote_host",
            ),
            "machine_limits": (
                "Limits",
                "Placement",
                "PlacementOf",
                "on_host",
                "with_own",
                "within",
            ),
            "runtimes": (
                "DOCKER_RUNTIME",
                "choice as runtime_choice",
                "engine_refusal",
                "keeps_memory",
                "refusal as runtime_refusal",
                "runsc_binary",
                "too_old",
            ),
            "webhook_rules": (
                "NameLookups",
                "Refused",
                "Resolve",
                "Rules",
                "Target",
                "check",
            ),
        },
    )
