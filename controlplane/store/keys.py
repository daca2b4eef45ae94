"""Every Redis key fleetd uses, and the hash fields the store reads or writes by name.

Only the store's modules import this: everything else asks ``Store`` for what it needs, so a key
or a field is spelled here and nowhere else. Every key starts with one prefix
(``FLEET_KEY_PREFIX``, ``fleet:`` by default, its rule in controlplane/settings.py): a ``Store``
builds its keys from its ``Keys``, so stores with different prefixes share one server without
seeing each other's keys.
"""

from __future__ import annotations

from controlplane.settings import DEFAULT_PREFIX, check_prefix

# --- instances, env vars, repos ------------------------------------------------------------
#: Instance hash: the machine a rebuild replaced last.
F_CURRENT_MACHINE = "currentMachineId"

# --- machines -------------------------------------------------------------------------------
# Machine hash fields beyond ``contracts.models.Machine`` (whose wire names the hash also uses).
#: The machine's NATS token, encrypted with the secret key.
F_SEALED_CREDENTIAL = "tokenEnc"
#: Set when the token is revoked; the auth callout refuses it from then on.
F_CREDENTIAL_REVOKED = "tokenRevokedAt"
# Fields of ``Machine`` the store writes on its own.
F_STATUS = "status"
#: The machine's instance (``Machine.instance_id``), read alone by the webhooks' fan-out.
F_MACHINE_INSTANCE = "instanceId"
F_STATUS_REASON = "statusReason"
F_UPDATED_AT = "updatedAt"
F_EXTERNAL_ID = "externalId"
F_PAUSED_BYTES = "pausedBytes"
F_WOKEN_BY = "wokenBy"
F_DAEMON_VERSION = "daemonVersion"
F_DAEMON_GIT_SHA = "daemonGitSha"
#: Set when the provisioner has ended a stopped machine's processes (removed by each stop):
#: a start waits for it, so that it never finds the old daemon still running.
F_STOP_DONE_AT = "stopDoneAt"
#: Set by each stop until the provisioner has carried it out: what tells a machine booting
#: behind a stop still to be carried out from one booting after its create.
F_STOP_PENDING = "stopPending"
#: The environment a machine runs and its build (``Machine.environment``, ``.environmentImage``).
F_ENVIRONMENT = "environment"
F_ENVIRONMENT_IMAGE = "environmentImage"

# --- stop/start: auto-stop and activity-------------------------------------------------------
#: Fields of a ``k_create_once`` hash.
F_ONCE_MACHINE = "machineId"
F_ONCE_FINGERPRINT = "fingerprint"
#: The instance's current machine when the key's machine was made ('' if none): the machine a
#: rebuild replaces.
F_ONCE_REPLACES = "replaces"

# --- access tokens --------------------------------------------------------------------------
#: Token hash: the SHA-256 of the secret (the secret itself is never stored).
F_DIGEST = "hash"
F_REVOKED_AT = "revokedAt"
#: Token hash: what a token may do, where, and until when (JSON where a list).
F_SCOPES = "scopes"
F_INSTANCE_IDS = "instanceIds"
F_LAST_USED_AT = "lastUsedAt"

# --- hosts (docs/hosts.md) ------------------------------------------------------------------
#: Host hash: its capacity in machines (0: no limit).
F_HOST_CAPACITY = "capacity"
#: Host hash: "1" while it is drained (hosts.drain): it takes no new machines.
F_HOST_DRAINING = "draining"
#: "1" while the host is below FLEET_HOST_MIN_AVAILABLE_MB (as of its last heartbeat).
F_HOST_MEMORY_LOW = "memoryLow"
#: Where the host's gvisor machines reach the egress proxy (empty: none).
F_HOST_PROXY_URL = "proxyUrl"
#: Machine hash: the host whose provisioner started it (``contracts.models.Machine.host_id``).
F_HOST_ID = "hostId"


class Keys:
    """Every key, under one prefix (``check_prefix``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)

    def pattern(self) -> str:
        """``SCAN MATCH`` of every key under this prefix (and of no other's)."""
        return self.prefix + "*"

    # --- instances, env vars, repos ------------------------------------------------------------
    @property
    def K_INSTANCES(self) -> str:
        return self.prefix + "instances"

    @property
    def K_PLATFORM_ENV(self) -> str:
        return self.prefix + "env:platform"

    def k_instance(self, instance_id: str) -> str:
        return f"{self.prefix}instance:{instance_id}"

    def k_instance_env(self, instance_id: str) -> str:
        return f"{self.prefix}env:instance:{instance_id}"

    def k_repos(self, instance_id: str) -> str:
        return f"{self.prefix}repos:{instance_id}"

    def k_repo_secrets(self, instance_id: str) -> str:
        return f"{self.prefix}repo-secrets:{instance_id}"

    def k_ssh_keys(self, instance_id: str) -> str:
        """JSON list: the instance's SSH public keys (instances.setSshKeys)."""
        return f"{self.prefix}ssh-keys:{instance_id}"

    def k_cron(self, instance_id: str) -> str:
        return f"{self.prefix}instance:{instance_id}:cron"

    def k_instance_limits(self, instance_id: str) -> str:
        """The instance's own machine limits (JSON of ``LimitsOverride``; absent: none)."""
        return f"{self.prefix}instance:{instance_id}:limits"

    def k_instance_environment(self, instance_id: str) -> str:
        """The instance's environment (JSON of ``Environment``; absent: auto-detection)."""
        return f"{self.prefix}instance:{instance_id}:environment"

    def k_instance_builds(self, instance_id: str) -> str:
        """The image IDs of the environment builds made for the instance (``environments.build``),
        a set: builds it may name as an image environment."""
        return f"{self.prefix}instance:{instance_id}:builds"

    def k_instance_egress(self, instance_id: str) -> str:
        """The instance's egress policy (JSON of ``EgressPolicy``; absent: allow everything)."""
        return f"{self.prefix}instance:{instance_id}:egress"

    def k_instance_machines(self, instance_id: str) -> str:
        return f"{self.prefix}instance:{instance_id}:machines"

    # --- machines -------------------------------------------------------------------------------
    @property
    def K_MACHINES(self) -> str:
        return self.prefix + "machines"

    def k_machine(self, machine_id: str) -> str:
        return f"{self.prefix}machine:{machine_id}"

    def k_cloned(self, machine_id: str) -> str:
        return f"{self.prefix}machine:{machine_id}:cloned"

    def k_boot_watch(self, machine_id: str) -> str:
        """Hash: the boot watchdog's window for a booting machine
        (controlplane/store/boot_watch.py); it expires by itself once no one looks."""
        return f"{self.prefix}machine:{machine_id}:boot-watch"

    def k_repo_warnings(self, machine_id: str) -> str:
        """The machine's repos that did not reach it: path -> reason
        (controlplane/store/repo_warnings.py)."""
        return f"{self.prefix}machine:{machine_id}:repo-warnings"

    def k_lifecycle(self, machine_id: str) -> str:
        """The machine's devcontainer settings its lifecycle commands come from (JSON; absent: a
        machine of no devcontainer, which runs none)."""
        return f"{self.prefix}machine:{machine_id}:lifecycle"

    def k_lifecycle_done(self, machine_id: str) -> str:
        """Set: the once-per-machine lifecycle stages that succeeded on the machine."""
        return f"{self.prefix}machine:{machine_id}:lifecycle-done"

    # --- stop/start: auto-stop and activity-------------------------------------------------------
    #: Hash: instance id -> seconds without gateway activity after which its machines stop,
    #: then ``:pause`` or ``:stop`` where an action was set.
    @property
    def K_AUTOSTOP(self) -> str:
        return self.prefix + "autostop"

    #: Sorted set: machine id -> its last gateway activity (epoch seconds).
    @property
    def K_ACTIVITY(self) -> str:
        return self.prefix + "machines:activity"

    #: Sorted set: paused machine id -> when auto-stop first saw it paused (epoch seconds).
    @property
    def K_PAUSED_SINCE(self) -> str:
        return self.prefix + "machines:paused-since"

    #: Hash: instance id -> the runtime of its next machines (instances.setRuntime).
    @property
    def K_RUNTIME(self) -> str:
        return self.prefix + "runtime"

    def k_lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def k_create_once(self, token_id: str, key: str) -> str:
        """A machines.create or machines.rebuild idempotency key, per calling token: one token's
        key never names another's machine. (One namespace for both methods: the fingerprint tells
        them apart, so a create's key sent with a rebuild is ``IdempotencyKeyReused``.)"""
        return f"{self.prefix}idem:create:{token_id}:{key}"

    # --- access tokens --------------------------------------------------------------------------
    @property
    def K_TOKENS(self) -> str:
        return self.prefix + "tokens"

    @property
    def K_TOKEN_HASHES(self) -> str:
        return self.prefix + "tokens:by-hash"

    def k_token(self, token_id: str) -> str:
        return f"{self.prefix}token:{token_id}"

    # --- users and sessions ---------------------------------------------------------------------
    @property
    def K_USERS(self) -> str:
        return self.prefix + "users"

    #: Hash: a user's email (lower case) -> their id.
    @property
    def K_USER_EMAILS(self) -> str:
        return self.prefix + "users:by-email"

    #: Hash: an OpenID subject (``iss`` space ``sub``) -> the user's id.
    @property
    def K_USER_SUBJECTS(self) -> str:
        return self.prefix + "users:by-subject"

    def k_user(self, user_id: str) -> str:
        """JSON of ``contracts.gateway.people.User``."""
        return f"{self.prefix}user:{user_id}"

    def k_user_roles(self, user_id: str) -> str:
        """Hash: instance id -> the user's role on it."""
        return f"{self.prefix}user:{user_id}:roles"

    def k_instance_members(self, instance_id: str) -> str:
        """Hash: user id -> their role on the instance (the other side of ``k_user_roles``)."""
        return f"{self.prefix}instance:{instance_id}:members"

    def k_session(self, session_id: str) -> str:
        """A signed-in browser's session (JSON; expires by itself)."""
        return f"{self.prefix}session:{session_id}"

    def k_signin(self, state_digest: str) -> str:
        """A sign-in under way, by the SHA-256 of its ``state``: its nonce and PKCE verifier
        (taken once: a replayed ``state`` finds nothing)."""
        return f"{self.prefix}signin:{state_digest}"

    def k_user_sessions(self, user_id: str) -> str:
        """Set: the user's session ids."""
        return f"{self.prefix}user:{user_id}:sessions"

    def k_events_ticket(self, digest: str) -> str:
        """An events ticket, by the SHA-256 of its secret: who it acts as (expires by itself)."""
        return f"{self.prefix}events-ticket:{digest}"

    def k_preview(self, digest: str) -> str:
        """A preview ticket or a preview cookie, by the SHA-256 of its secret: whom it acts as,
        for which machine and port (expires by itself)."""
        return f"{self.prefix}preview:{digest}"

    # --- liveness -------------------------------------------------------------------------------
    #: Sorted set: machine id -> its last heartbeat (epoch seconds).
    @property
    def K_HEARTBEATS(self) -> str:
        return self.prefix + "heartbeats"

    #: Set: the machines liveness marked unresponsive (a beat from one of them is a recovery).
    @property
    def K_UNRESPONSIVE(self) -> str:
        return self.prefix + "machines:unresponsive"

    # --- hosts (docs/hosts.md) ------------------------------------------------------------------
    #: Sorted set: host id -> its provisioner's last heartbeat (epoch seconds).
    @property
    def K_HOSTS(self) -> str:
        return self.prefix + "hosts"

    def k_host(self, host_id: str) -> str:
        """Hash: what the host's provisioner announced (``F_HOST_CAPACITY``)."""
        return f"{self.prefix}host:{host_id}"

    def k_host_machines(self, host_id: str) -> str:
        """Set: machines the host's provisioner took (pruned of the ended and the moved ones)."""
        return f"{self.prefix}host:{host_id}:machines"

    # --- machines' metrics (controlplane/store/metrics.py) --------------------------------------
    def k_machine_metrics(self, machine_id: str, tier: str) -> str:
        """Stream: the machine's samples of one series (``fine``: each; ``coarse``: a minute
        each), entry ids their times (ms)."""
        return f"{self.prefix}machine:{machine_id}:metrics:{tier}"

    #: Sorted set: machine id -> the time of its last sample (epoch seconds).
    @property
    def K_METRICS_MACHINES(self) -> str:
        return self.prefix + "metrics:machines"

    # --- codemode -------------------------------------------------------------------------------
    #: Run records (JSON, expiring) and their indexes, newest last by start time.
    @property
    def K_CODEMODE_RUNS(self) -> str:
        return self.prefix + "codemode:runs"

    def k_codemode_run(self, run_id: str) -> str:
        return f"{self.prefix}codemode:run:{run_id}"

    def k_codemode_instance_runs(self, instance_id: str) -> str:
        return f"{self.prefix}codemode:runs:{instance_id}"

    def k_codemode_bridges(self, instance_id: str) -> str:
        """Hash: bridge name -> its JSON, the authorization sealed by the secret key."""
        return f"{self.prefix}codemode:bridges:{instance_id}"

    # --- secrets (contracts/gateway/secrets.py) -------------------------------------------------
    def k_secrets(self, instance_id: str) -> str:
        """Hash: secret name -> its JSON, the value sealed by the secret key."""
        return f"{self.prefix}secrets:{instance_id}"

    def k_secret_uses(self, instance_id: str) -> str:
        """Hash: secret name -> requests made with it; ``name:at`` -> the last one's time."""
        return f"{self.prefix}secrets:uses:{instance_id}"

    def k_secret_users(self, instance_id: str, name: str) -> str:
        """Set: the machines that made a request with the secret (its first use by each)."""
        return f"{self.prefix}secrets:users:{instance_id}:{name}"

    def k_secrets_ca(self, instance_id: str) -> str:
        """The instance's CA (JSON: its certificate, its key sealed by the secret key)."""
        return f"{self.prefix}secrets:ca:{instance_id}"

    # --- webhooks (controlplane/store/webhooks.py) ---------------------------------------------
    def k_webhook(self, webhook_id: str) -> str:
        """Hash: an endpoint (its fields: controlplane/store/webhooks.py), its secret sealed."""
        return f"{self.prefix}webhook:{webhook_id}"

    def k_webhooks_of(self, scope: str) -> str:
        """Set: the endpoints of an instance, or of the platform (scope ``platform``)."""
        return f"{self.prefix}webhooks:of:{scope}"

    def k_webhook_queue(self, webhook_id: str, queue: str) -> str:
        """Sorted set: the events waiting for an endpoint from one machine (``queue``: its id,
        or ``-`` for test events), by stream sequence: delivered lowest first, one at a time."""
        return f"{self.prefix}webhook:{webhook_id}:queue:{queue}"

    def k_webhook_queues(self, webhook_id: str) -> str:
        """Set: the endpoint's queues that hold events."""
        return f"{self.prefix}webhook:{webhook_id}:queues"

    def k_webhook_bodies(self, webhook_id: str) -> str:
        """Hash: event id -> the body to POST, for each event waiting for the endpoint."""
        return f"{self.prefix}webhook:{webhook_id}:bodies"

    def k_webhook_tries(self, webhook_id: str) -> str:
        """Hash: event id -> ``failed,firstAtMs``: a waiting event's failed attempts so far."""
        return f"{self.prefix}webhook:{webhook_id}:tries"

    def k_webhook_sizes(self, webhook_id: str) -> str:
        """Sorted set: queue -> the bytes of the bodies waiting in it: past the endpoint's
        bound, the oldest events of the largest queue are dropped."""
        return f"{self.prefix}webhook:{webhook_id}:sizes"

    def k_webhook_done(self, webhook_id: str, queue: str) -> str:
        """The stream sequence of the queue's last event delivered (or given up), for an hour:
        an event the fan-out is handed again after that is not queued twice."""
        return f"{self.prefix}webhook:{webhook_id}:done:{queue}"

    def k_webhook_attempts(self, webhook_id: str) -> str:
        """List: the endpoint's last delivery attempts (JSON), the newest first."""
        return f"{self.prefix}webhook:{webhook_id}:attempts"

    @property
    def K_WEBHOOKS_DUE(self) -> str:
        """Sorted set: ``<webhookId>|<queue>`` -> when (epoch ms) its head is next attempted
        (or, while a delivery process holds it, when that lease ends)."""
        return self.prefix + "webhooks:due"

    @property
    def K_WEBHOOKS_VERSION(self) -> str:
        """A count raised by each change to where events go (an endpoint made, deleted or
        disabled): the fan-out keeps the endpoints it looked up for as long as it stays."""
        return self.prefix + "webhooks:version"

    @property
    def K_WEBHOOKS_SCOPES(self) -> str:
        """Hash: webhook id -> its scope (an instance id, or ``platform``): a delivery process
        holds at most ``FLEET_WEBHOOK_INSTANCE_CONCURRENCY`` queues of one scope."""
        return self.prefix + "webhooks:scopes"

    @property
    def K_WEBHOOKS_LEASES(self) -> str:
        """Hash: ``<webhookId>|<queue>`` -> the token of the delivery process that holds it."""
        return self.prefix + "webhooks:leases"

    # --- E2B sandboxes (controlplane/store/e2b.py) ----------------------------------------------
    def k_e2b_sandbox(self, sandbox_id: str) -> str:
        """What E2B's API says of a sandbox beyond its machine (JSON: ``E2bSandbox``)."""
        return f"{self.prefix}e2b:sandbox:{sandbox_id}"

    @property
    def K_E2B_ENDS(self) -> str:
        """Sorted set: sandbox id -> when (epoch ms) its timeout runs out (+inf: carried out)."""
        return self.prefix + "e2b:ends"

    def k_e2b_token(self, digest: str) -> str:
        """An access token's holder (JSON: ``TokenHolder``), by the token's SHA-256."""
        return f"{self.prefix}e2b:token:{digest}"

    def k_e2b_tokens_of(self, sandbox_id: str) -> str:
        """Set: the digests of a sandbox's access tokens."""
        return f"{self.prefix}e2b:tokens:{sandbox_id}"

    # --- snapshots ------------------------------------------------------------------------------
    def k_snapshot(self, snapshot_id: str) -> str:
        """A snapshot's record (JSON; no expiry: kept until deleted)."""
        return f"{self.prefix}snapshot:{snapshot_id}"

    def k_instance_snapshots(self, instance_id: str) -> str:
        """Set: the instance's snapshot ids."""
        return f"{self.prefix}instance:{instance_id}:snapshots"

    def k_snapshot_uses(self, snapshot_id: str) -> str:
        """Set: ids of the machines made from the snapshot that may still be being made (each
        holds it until it is made: controlplane/store/snapshots.py)."""
        return f"{self.prefix}snapshot:{snapshot_id}:uses"

    def k_snapshot_deleting(self, snapshot_id: str) -> str:
        """Set while the snapshot is being deleted: no machine is made from it any more."""
        return f"{self.prefix}snapshot:{snapshot_id}:deleting"

    def k_instance_disk(self, instance_id: str) -> str:
        """Hash: what of the instance's takes disk (``home:<machine>``, ``paused:<machine>``,
        ``image:<snapshot or memory image>``) -> its bytes (controlplane/store/disk.py)."""
        return f"{self.prefix}instance:{instance_id}:disk"

    def k_instance_disk_reservations(self, instance_id: str) -> str:
        """Sorted set: fields of ``k_instance_disk`` held for a copy under way, scored by when
        they lapse (ms since the epoch)."""
        return f"{self.prefix}instance:{instance_id}:disk-reservations"

    def k_instance_snapshot_reservations(self, instance_id: str) -> str:
        """Sorted set: ids of the instance's snapshots being taken, scored by when their
        reservation lapses (ms since the epoch): they count against its cap until saved."""
        return f"{self.prefix}instance:{instance_id}:snapshot-reservations"
