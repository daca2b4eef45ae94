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


def k_ssh_keys(instance_id: str) -> str:
    """JSON list: the instance's SSH public keys (instances.setSshKeys)."""
    return f"{P}ssh-keys:{instance_id}"


def k_cron(instance_id: str) -> str:
    return f"{P}instance:{instance_id}:cron"


def k_instance_limits(instance_id: str) -> str:
    """The instance's own machine limits (JSON of ``LimitsOverride``; absent: none)."""
    return f"{P}instance:{instance_id}:limits"


def k_instance_environment(instance_id: str) -> str:
    """The instance's environment (JSON of ``Environment``; absent: auto-detection)."""
    return f"{P}instance:{instance_id}:environment"


def k_instance_builds(instance_id: str) -> str:
    """The image IDs of the environment builds made for the instance (``environments.build``),
    a set: builds it may name as an image environment."""
    return f"{P}instance:{instance_id}:builds"


def k_instance_egress(instance_id: str) -> str:
    """The instance's egress policy (JSON of ``EgressPolicy``; absent: allow everything)."""
    return f"{P}instance:{instance_id}:egress"


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


def k_lifecycle(machine_id: str) -> str:
    """The machine's devcontainer settings its lifecycle commands come from (JSON; absent: a
    machine of no devcontainer, which runs none)."""
    return f"{P}machine:{machine_id}:lifecycle"


def k_lifecycle_done(machine_id: str) -> str:
    """Set: the once-per-machine lifecycle stages that succeeded on the machine."""
    return f"{P}machine:{machine_id}:lifecycle-done"


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
#: Set when the provisioner has ended a stopped machine's processes (removed by each stop):
#: a start waits for it, so that it never finds the old daemon still running.
F_STOP_DONE_AT = "stopDoneAt"
#: The environment a machine runs and its build (``Machine.environment``, ``.environmentImage``).
F_ENVIRONMENT = "environment"
F_ENVIRONMENT_IMAGE = "environmentImage"

# --- stop/start: auto-stop and activity-------------------------------------------------------
#: Hash: instance id -> seconds without gateway activity after which its machines stop.
K_AUTOSTOP = P + "autostop"
#: Sorted set: machine id -> its last gateway activity (epoch seconds).
K_ACTIVITY = P + "machines:activity"
#: Hash: instance id -> the runtime of its next machines (instances.setRuntime).
K_RUNTIME = P + "runtime"


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


#: Token hash: what a token may do, where, and until when (JSON where a list).
F_SCOPES = "scopes"
F_INSTANCE_IDS = "instanceIds"
F_LAST_USED_AT = "lastUsedAt"

# --- users and sessions ---------------------------------------------------------------------
K_USERS = P + "users"
#: Hash: a user's email (lower case) -> their id.
K_USER_EMAILS = P + "users:by-email"
#: Hash: an OpenID subject (``iss`` space ``sub``) -> the user's id.
K_USER_SUBJECTS = P + "users:by-subject"


def k_user(user_id: str) -> str:
    """JSON of ``contracts.gateway_people.User``."""
    return f"{P}user:{user_id}"


def k_user_roles(user_id: str) -> str:
    """Hash: instance id -> the user's role on it."""
    return f"{P}user:{user_id}:roles"


def k_instance_members(instance_id: str) -> str:
    """Hash: user id -> their role on the instance (the other side of ``k_user_roles``)."""
    return f"{P}instance:{instance_id}:members"


def k_session(session_id: str) -> str:
    """A signed-in browser's session (JSON; expires by itself)."""
    return f"{P}session:{session_id}"


def k_signin(state_digest: str) -> str:
    """A sign-in under way, by the SHA-256 of its ``state``: its nonce and PKCE verifier
    (taken once: a replayed ``state`` finds nothing)."""
    return f"{P}signin:{state_digest}"


def k_user_sessions(user_id: str) -> str:
    """Set: the user's session ids."""
    return f"{P}user:{user_id}:sessions"


def k_events_ticket(digest: str) -> str:
    """An events ticket, by the SHA-256 of its secret: who it acts as (expires by itself)."""
    return f"{P}events-ticket:{digest}"


def k_preview(digest: str) -> str:
    """A preview ticket or a preview cookie, by the SHA-256 of its secret: whom it acts as,
    for which machine and port (expires by itself)."""
    return f"{P}preview:{digest}"


# --- liveness -------------------------------------------------------------------------------
#: Sorted set: machine id -> its last heartbeat (epoch seconds).
K_HEARTBEATS = P + "heartbeats"
#: Set: the machines liveness marked unresponsive (a beat from one of them is a recovery).
K_UNRESPONSIVE = P + "machines:unresponsive"

# --- hosts (docs/hosts.md) ------------------------------------------------------------------
#: Sorted set: host id -> its provisioner's last heartbeat (epoch seconds).
K_HOSTS = P + "hosts"


def k_host(host_id: str) -> str:
    """Hash: what the host's provisioner announced (``F_HOST_CAPACITY``)."""
    return f"{P}host:{host_id}"


def k_host_machines(host_id: str) -> str:
    """Set: machines the host's provisioner took (pruned of the ended and the moved ones)."""
    return f"{P}host:{host_id}:machines"


#: Host hash: its capacity in machines (0: no limit).
F_HOST_CAPACITY = "capacity"
#: Host hash: "1" while it is drained (hosts.drain): it takes no new machines.
F_HOST_DRAINING = "draining"
#: "1" while the host is below FLEET_HOST_MIN_AVAILABLE_MB (as of its last heartbeat).
F_HOST_MEMORY_LOW = "memoryLow"
#: Machine hash: the host whose provisioner started it (``contracts.models.Machine.host_id``).
F_HOST_ID = "hostId"

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


# --- snapshots ------------------------------------------------------------------------------
def k_snapshot(snapshot_id: str) -> str:
    """A snapshot's record (JSON; no expiry: kept until deleted)."""
    return f"{P}snapshot:{snapshot_id}"


def k_instance_snapshots(instance_id: str) -> str:
    """Set: the instance's snapshot ids."""
    return f"{P}instance:{instance_id}:snapshots"
