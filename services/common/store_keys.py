"""Every Redis key fleetd uses, and the hash fields the store reads or writes by name.

Only the store modules (``store*.py``) import this: everything else asks ``Store`` for what it
needs, so a key or a field is spelled here and nowhere else.
"""

from __future__ import annotations

P = "fleet:"

# --- instances, env vars, repos ------------------------------------------------------------
K_INSTANCES = P + "instances"
K_PLATFORM_ENV = P + "env:platform"


def k_instance(instance_id: str) -> str:
    return f"{P}instance:{instance_id}"


def k_instance_env(instance_id: str) -> str:
    return f"{P}env:instance:{instance_id}"


def k_repos(instance_id: str) -> str:
    return f"{P}repos:{instance_id}"


def k_repo_secrets(instance_id: str) -> str:
    return f"{P}repo-secrets:{instance_id}"


def k_cron(instance_id: str) -> str:
    return f"{P}instance:{instance_id}:cron"


def k_instance_limits(instance_id: str) -> str:
    """The instance's own machine limits (JSON of ``LimitsOverride``; absent: none)."""
    return f"{P}instance:{instance_id}:limits"


def k_instance_machines(instance_id: str) -> str:
    return f"{P}instance:{instance_id}:machines"


#: Instance hash: the machine a rebuild replaced last.
F_CURRENT_MACHINE = "currentMachineId"

# --- machines -------------------------------------------------------------------------------
K_MACHINES = P + "machines"


def k_machine(machine_id: str) -> str:
    return f"{P}machine:{machine_id}"


def k_cloned(machine_id: str) -> str:
    return f"{P}machine:{machine_id}:cloned"


# Machine hash fields beyond ``contracts.models.Machine`` (whose wire names the hash also uses).
#: The machine's NATS token, encrypted with the secret key.
F_SEALED_CREDENTIAL = "tokenEnc"
#: Set when the token is revoked; the auth callout refuses it from then on.
F_CREDENTIAL_REVOKED = "tokenRevokedAt"
# Fields of ``Machine`` the store writes on its own.
F_STATUS = "status"
F_STATUS_REASON = "statusReason"
F_UPDATED_AT = "updatedAt"
F_EXTERNAL_ID = "externalId"
F_DAEMON_VERSION = "daemonVersion"
F_DAEMON_GIT_SHA = "daemonGitSha"


def k_lock(name: str) -> str:
    return f"{P}lock:{name}"


def k_create_once(token_id: str, key: str) -> str:
    """A machines.create or machines.rebuild idempotency key, per calling token: one token's
    key never names another's machine. (One namespace for both methods: the fingerprint tells
    them apart, so a create's key sent with a rebuild is ``IdempotencyKeyReused``.)"""
    return f"{P}idem:create:{token_id}:{key}"


#: Fields of a ``k_create_once`` hash.
F_ONCE_MACHINE = "machineId"
F_ONCE_FINGERPRINT = "fingerprint"
#: The instance's current machine when the key's machine was made ('' if none): the machine a
#: rebuild replaces.
F_ONCE_REPLACES = "replaces"


# --- access tokens --------------------------------------------------------------------------
K_TOKENS = P + "tokens"
K_TOKEN_HASHES = P + "tokens:by-hash"


def k_token(token_id: str) -> str:
    return f"{P}token:{token_id}"


#: Token hash: the SHA-256 of the secret (the secret itself is never stored).
F_DIGEST = "hash"
F_REVOKED_AT = "revokedAt"


def k_events_ticket(digest: str) -> str:
    """An events ticket, by the SHA-256 of its secret: who it acts as (expires by itself)."""
    return f"{P}events-ticket:{digest}"


# --- liveness -------------------------------------------------------------------------------
#: Sorted set: machine id -> its last heartbeat (epoch seconds).
K_HEARTBEATS = P + "heartbeats"
#: Set: the machines liveness marked unresponsive (a beat from one of them is a recovery).
K_UNRESPONSIVE = P + "machines:unresponsive"

# --- codemode -------------------------------------------------------------------------------
#: Run records (JSON, expiring) and their indexes, newest last by start time.
K_CODEMODE_RUNS = P + "codemode:runs"


def k_codemode_run(run_id: str) -> str:
    return f"{P}codemode:run:{run_id}"


def k_codemode_instance_runs(instance_id: str) -> str:
    return f"{P}codemode:runs:{instance_id}"


def k_codemode_bridges(instance_id: str) -> str:
    """Hash: bridge name -> its JSON, the authorization sealed by the secret key."""
    return f"{P}codemode:bridges:{instance_id}"
