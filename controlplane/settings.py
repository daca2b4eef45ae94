"""One settings object per process, read from ``FLEET_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from base.env_settings import name_env_var
from contracts.gateway.environments import IMAGE_REF_PATTERN
from controlplane.preview_origin import (
    PreviewOrigin,
    default_preview_origin,
    parse_preview_origin,
)

#: The prefix of every key unless ``FLEET_KEY_PREFIX`` says otherwise.
DEFAULT_PREFIX = "fleet:"
#: Letters, digits and ``:._-``, up to 64: no whitespace, no glob character (``*?[]\``, so that
#: ``SCAN MATCH <prefix>*`` matches exactly the prefix's keys) and no ``{}`` (a cluster's hash
#: tag, which would move keys between slots) and no ``%`` (the user lookup script formats key
#: templates).
_PREFIX = re.compile(r"[A-Za-z0-9:._-]{1,64}")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it may start every key (ValueError naming FLEET_KEY_PREFIX otherwise)."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"FLEET_KEY_PREFIX: {prefix[:80]!r} is not 1 to 64 letters, digits "
                         "or ':._-'")  # fmt: skip
    return prefix


PREFIX = "FLEET_"


def _uid_range(name: str, text: str) -> tuple[int, int] | None:
    """A ``first-last`` range of uids (``name``'s), as (first, last); None when empty."""
    if not text.strip():
        return None
    first, _, last = text.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        lo = hi = 0
    if not 0 < lo <= hi:
        raise SettingsError(f"{name}: {text!r} is not FIRST-LAST")
    return lo, hi


class SettingsError(ValueError):
    """A setting is missing or malformed; the message, one line, names the environment variable
    and what it takes. A ValueError, so that msgspec reports one raised in ``__post_init__``."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    #: One URL, or several separated by commas (the servers of a cluster).
    nats_url: str = "nats://127.0.0.1:4222"
    #: NATS credentials of this service process (empty: connect without them).
    nats_user: str = ""
    nats_password: str = ""
    #: ``redis://[:password@]host:port/db``, or ``unix://[:password@]/path/to/socket?db=0``.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: ``host:port,...`` of Redis Sentinels (empty: none). With them, the services follow the
    #: primary the sentinels name across failovers, and ``redis_url`` gives only the password
    #: and the database.
    redis_sentinels: str = ""
    #: The name the sentinels monitor the primary under.
    redis_sentinel_master: str = "fleetd"
    #: What every Redis key of this fleet starts with (letters, digits, ``:._-``, up to 64):
    #: fleets with different prefixes share one server and see nothing of each other.
    key_prefix: str = DEFAULT_PREFIX
    #: JetStream replicas of the event stream (3 on a 3-node cluster; 1 for one server).
    stream_replicas: int = 1
    #: Limits of the event stream, so that no publisher (a machine flooding its status
    #: subject) can fill it: how long events are kept, the stream's total size (the oldest go
    #: first), one event's size, and events kept per subject (per machine and kind).
    stream_max_age_s: float = 30 * 24 * 3600.0
    stream_max_bytes: int = 1024**3
    stream_max_msg_size: int = 64 * 1024
    stream_max_msgs_per_subject: int = 100
    data_dir: str = ".fleet-data"
    #: Fernet key that encrypts machine tokens at rest.
    secret_key: str = ""
    admin_token: str = ""
    env: Literal["dev", "prod"] = "dev"
    log_level: str = "info"
    #: The services' event loop (controlplane/process/event_loop.py): uvloop where importable,
    #: else (or when set to ``asyncio``) the standard library's.
    event_loop: Literal["asyncio", "uvloop"] = "uvloop"
    # gateway
    host: str = "127.0.0.1"
    #: The console's and API's port. 0: a free one, chosen as the gateway starts and logged
    #: (``gateway.listening``).
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    #: JSON-RPC: requests in one batch, and bytes in the answer to one request body.
    rpc_max_batch: int = 100
    rpc_max_response_bytes: int = 8 * 1024 * 1024
    #: Requests of one batch run at once (1: one after the other).
    rpc_batch_concurrency: int = 16
    #: Calls per token and minute (a burst of that many, then refilled evenly): machines.create
    #: and machines.rebuild together, and the commands and code runs (machines.exec and its
    #: stream, machines.execStream; machines.code.run; codemode.run), on every route. 0: no
    #: limit.
    rate_create_per_min: int = 30
    rate_exec_per_min: int = 600
    #: environments.build calls per token and minute (each may build an image). 0: no limit.
    rate_build_per_min: int = 10
    #: machines.pause, machines.resume and machines.snapshot together per token and minute
    #: (each checkpoints, restores or copies a machine). 0: no limit.
    rate_pause_per_min: int = 60
    #: webhooks.test calls per token and minute (each queues an event for an endpoint).
    #: 0: no limit.
    rate_webhook_test_per_min: int = 10
    #: Bad secrets per client address, kind (token, ticket, preview cookie) and minute
    #: answered 401; past it, the next bad one of that kind gets 429 (a valid one is always
    #: served). 0: no limit.
    rate_unauthenticated_per_min: int = 120
    #: GET /events: open streams per token and per gateway process, and stored-event replays
    #: running at once per gateway process (more wait for a turn).
    events_max_per_token: int = 20
    events_max_streams: int = 1000
    events_max_replays: int = 32
    #: Streams (tunnels, preview requests, terminal attaches, file transfers, streamed commands
    #: and code runs of POST /rpc/stream, codemode's run streams) one token may hold open at
    #: once through one gateway process; past it, 1046 TooManyStreams (429). 0: no limit.
    streams_per_token: int = 64
    #: How long one write of a streamed answer (POST /rpc/stream, codemode's run stream) may
    #: wait for its client to read: past it the stream ends (its command killed, its code run
    #: cancelled) rather than held in the gateway's memory for a client that stopped reading.
    client_write_timeout_s: float = 30.0
    #: The revocation round: how often the gateway checks that what each token or session
    #: holds open (event streams, byte streams) still stands, how long it keeps a caller it
    #: resolved, and how long the egress proxy keeps an instance's secrets it read. A change
    #: written on another replica is announced and takes effect at once; this bounds it when
    #: the announcement is lost.
    revocation_round_s: float = 0.5
    #: How long a ticket from events.ticket stays valid (it is used once).
    events_ticket_ttl_s: float = 30.0
    #: A personal access token's expiry when tokens.create names none.
    token_default_ttl_s: int = 30 * 24 * 3600
    #: The longest expiry tokens.create may ask for.
    token_max_ttl_s: int = 365 * 24 * 3600
    #: OpenID Connect sign-in: the provider's issuer URL (empty: no sign-in, tokens only).
    oidc_issuer: str = ""
    #: This gateway's client id at the OpenID provider.
    oidc_client_id: str = ""
    #: This gateway's client secret at the OpenID provider.
    oidc_client_secret: str = ""
    #: Group names (the ID token's ``groups`` claim), comma-separated, whose members are
    #: platform admins.
    oidc_admin_groups: str = ""
    #: Group names, comma-separated, whose members are auditors.
    oidc_auditor_groups: str = ""
    #: Take an email the provider sends with no ``email_verified`` claim (Microsoft Entra ID
    #: never sends one) as verified: only for a provider where users cannot set their own
    #: email. An ``email_verified`` it sends other than true is refused all the same.
    oidc_trust_email: bool = False
    #: Where browsers reach this gateway: the OpenID redirect URI is ``<it>/auth/callback``
    #: (empty: ``http://<host>:<port>``).
    public_url: str = ""
    #: How long a signed-in browser's session lasts.
    session_ttl_s: float = 12 * 3600.0
    #: How long a browser's preview cookie (from machines.previewTicket) stays valid.
    preview_session_ttl_s: float = 8 * 3600.0
    #: The address of the preview listener, where machines' pages are served, on an origin of
    #: their own, never the console's.
    preview_host: str = "127.0.0.1"
    #: The preview listener's port (never ``port``). 0: a free one, chosen as the gateway starts.
    preview_port: int = 0
    #: Where browsers reach the preview listener, a URL template (controlplane.preview_origin):
    #: with {machine} and {port} in its host, an origin per machine and port (e.g.
    #: https://{machine}-{port}.preview.example.com, a wildcard DNS name); with neither, one origin
    #: that every preview shares by path. Empty: http://{machine}-{port}.localhost:PREVIEW_PORT.
    preview_origin: str = ""
    #: The deadline of a gateway call's publish: how long it retries storing its event (across
    #: a reconnect to another NATS node and a stream leader's election, each try deduplicated
    #: by its Nats-Msg-Id) before answering 1501 Unavailable: well under a client's timeout.
    gateway_publish_wait_s: float = 20.0
    #: How long a machines.create idempotencyKey is remembered (a retry after it makes anew).
    idempotency_ttl_s: float = 24 * 3600.0
    #: How many snapshots (machines.snapshot) one instance may hold; kept until deleted.
    max_snapshots: int = 20
    #: The disk one instance's copies may take on its hosts, in MB: its homes as last measured,
    #: its paused machines' images and its snapshots together (0: no limit).
    instance_disk_mb: int = 51200
    #: Prometheus ``GET /metrics`` of a service without an HTTP server of its own (0: none).
    #: Each process needs its own port; the gateway serves /metrics on ``port`` instead.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    #: Seconds between two samples of each machine's CPU, memory, disk and network, taken by
    #: the provisioner of its host (services/provisioner/usage_sampler.py; docs/monitoring.md).
    metrics_sample_s: float = 5.0
    #: Seconds between two measures of a machine's home for its disk use (the samples between
    #: carry the last figure): a walk, where its file system keeps no figure, costs the machine.
    metrics_disk_s: float = 60.0
    #: A walk of a machine's home for its disk use (where its file system keeps no figure of
    #: its own) stops after this many entries; the figure is then "at least"
    #: (providers/disk_walk.py). The walk runs in the machine's cgroups, charged to it.
    disk_walk_entries: int = 100_000
    #: ... or after this many seconds, whichever comes first (killed 10 s past it).
    disk_walk_s: float = 5.0
    #: The gateway's /metrics also has a gauge per machine (its latest sample), labelled with
    #: its id and instance: off by default (a series per machine).
    metrics_per_machine: bool = False
    # audit log (docs/audit.md)
    #: Record every state-changing call in the audit stream (off: nothing is recorded).
    audit_enabled: bool = True
    #: How long audit entries are kept (seconds): the stream drops older ones.
    audit_max_age_s: float = 365 * 24 * 3600.0
    #: The audit stream's total size (bytes): past it, the oldest entries go first.
    audit_max_bytes: int = 10 * 1024**3
    #: Entries waiting to be stored, at most; past it a new one is dropped, counted and logged.
    audit_buffer: int = 10000
    #: Entries of refusals that authenticate as no one (a bad, expired or revoked token, a
    #: failed sign-in, a call with no token), per client address per minute; ten times this in
    #: all. Past either, they are counted into one ``audit.suppressed`` entry per
    #: ``audit_suppressed_every_s``, so unauthenticated garbage cannot fill the stream. 0: no limit.
    audit_unauthenticated_per_min: int = 30
    #: Entries of one known caller's refused or failed calls (by user, else token) per minute;
    #: ten times this for all callers together. Past either, counted into one
    #: ``audit.suppressed`` entry per caller per ``audit_suppressed_every_s``. 0: no limit.
    audit_refusals_per_min: int = 60
    #: How often the refusals counted past that limit are written, as one entry.
    audit_suppressed_every_s: float = 60.0
    #: The gateway's NATS user in the audit account (empty: ``nats_user`` and its password).
    audit_nats_user: str = ""
    #: Its password.
    audit_nats_password: str = ""
    # consumers
    #: How long JetStream waits for an ack before it redelivers an event to another replica
    #: (or to the restarted one). Short, so that a killed stage's machines resume within
    #: seconds; a long handler keeps its event with a progress ack every quarter of this.
    ack_wait_s: float = 4.0
    max_deliver: int = 5
    concurrency: int = 64
    # daemon RPC
    rpc_timeout_s: float = 10.0
    # setup
    clone_timeout_s: float = 300.0
    #: repos.add's check of a repo (git ls-remote on the platform): past this, it is added
    #: with a warning, unchecked.
    repo_check_timeout_s: float = 8.0
    egress_proxy: str = ""
    #: A PEM bundle the egress proxy trusts besides the system's CAs, for the upstreams a
    #: secret is added for (a private API, a test server, a private repo's git server); git on
    #: the platform's host (repos.add's check, an environment's checkout) trusts it too.
    secrets_upstream_ca: str = ""
    #: The egress proxy's port for gvisor machines (their stack has a loopback of its own):
    #: on the address they reach NATS at (the host's loopback through their gateway, or NATS's
    #: host). 0: gvisor machines go out without the proxy.
    secrets_proxy_port: int = 3129
    #: The machines' DNS proxy asks this server (``host[:port]``, ``[v6]:port``); empty: the
    #: host's first nameserver (/etc/resolv.conf).
    egress_dns_upstream: str = ""
    #: Each machine's DNS queries a second (on average, with a burst of twice as many)...
    egress_dns_rate: float = 50.0
    #: ...and at once (its TCP connections to the resolver too); past either: REFUSED.
    egress_dns_concurrency: int = 16
    no_proxy: str = "localhost,127.0.0.1,::1"
    #: Path (on the platform) of a PEM bundle to install on machines; empty: none.
    ca_bundle: str = ""
    #: A live env or repos change is pushed once no other change of the same scope came for
    #: this long (a burst of sets is one push per machine)...
    config_debounce_s: float = 0.2
    #: ...but never later than this after the first change of the burst.
    config_debounce_max_s: float = 2.0
    # the E2B front (services/gateway/e2b, docs/e2b.md)
    #: The address where the gateway serves E2B's control and sandbox APIs...
    e2b_host: str = "127.0.0.1"
    #: ...and its port (0: a port the kernel gives; ``fleet up``: the gateway's port + 2).
    e2b_port: int = 0
    #: The domain in a sandbox's host names (``{port}-{sandboxId}.{domain}``: what the SDKs'
    #: ``get_host`` answers and a wildcard reverse proxy routes here); empty: ``localhost``
    #: and the front's port.
    e2b_domain: str = ""
    #: The runtime of a sandbox's machine: ``gvisor`` keeps its memory across pause, resume
    #: and fork, as E2B's sandboxes do.
    e2b_runtime: Literal["namespaces", "gvisor"] = "gvisor"
    #: Templates beside ``base`` and ``code-interpreter-v1`` (the platform's default
    #: environment): comma-separated ``name=image`` (an image of the hosts' Docker engines).
    e2b_templates_spec: str = ""
    # webhooks (services/webhooks, docs/webhooks.md)
    #: The waits between a failed delivery and the next attempt (seconds, comma-separated; the
    #: last repeats), within ``webhook_retry_budget_s`` of the first...
    webhook_retry_steps_s: str = "5,300,1800,7200,18000,36000"
    #: ...whose end is the event's last attempt to that endpoint.
    webhook_retry_budget_s: float = 86400.0
    #: How long an endpoint has to answer (a 2xx in time: delivered).
    webhook_timeout_s: float = 15.0
    #: An endpoint whose every attempt failed for this long is disabled.
    webhook_disable_after_s: float = 5 * 86400.0
    #: Networks (comma-separated CIDRs or addresses, each with an optional ``:port``, IPv6 as
    #: ``[net]:port``) a webhook may be sent to although they are loopback, link-local,
    #: private or the platform's own (a receiver on the host, in development), for every
    #: tenant; the platform's services' ports never.
    webhook_allow_private: str = ""
    #: Deliveries under way at once in one webhooks process...
    webhook_concurrency: int = 64
    #: ...and of them, to the endpoints of one instance (or of the platform's): a tenant whose
    #: endpoints answer slowly holds no more, and every other tenant's events go on.
    webhook_instance_concurrency: int = 8
    #: The most events waiting for one endpoint; past it, the oldest events of its largest
    #: queue (by bytes) are dropped and counted (``webhooks.deliveries``: ``dropped``)...
    webhook_queue_max_events: int = 1000
    #: ...and the most bytes of their bodies, past which the same.
    webhook_queue_max_bytes: int = 1024 * 1024
    #: How often every endpoint's maker is looked at again (and at once on a change to
    #: callers: a revoked token, a removed member): an endpoint stands while its maker may
    #: manage it.
    webhook_makers_round_s: float = 30.0
    # probe
    probe_delay_s: float = 0.0
    probe_timeout_s: float = 60.0
    probe_interval_s: float = 0.5
    # liveness
    #: Seconds between daemon heartbeats (local daemons get the same value).
    heartbeat_s: float = 5.0
    #: Missed heartbeats after which a ready machine is marked unresponsive.
    missed_heartbeats: int = 3
    #: How often the prober looks for idle machines to stop (instances.setAutoStop).
    autostop_tick_s: float = 2.0
    #: A machine's gateway activity (what auto-stop counts) is written at most once per this
    #: many seconds by each gateway process: auto-stop may see it this much late; 0: every call.
    activity_write_s: float = 1.0
    #: A machine paused this long (seconds) is stopped, its memory image deleted; 0: never.
    paused_stop_after_s: int = 86400
    #: A gvisor machine that keeps its memory, of an instance that never set auto-stop, is
    #: paused after this many seconds without gateway activity; 0: never.
    autopause_idle_s: int = 900
    #: A call that needs a paused or stopped machine resumes or starts it and waits for it
    #: (docs/stop-start.md#wake-on-access); false: it is refused at once.
    wake_on_access: bool = True
    #: How long such a call waits for its machine to answer before it gives up (504).
    wake_timeout_s: float = 45.0
    # archive
    #: How long an archive waits for the daemon it asked to stop to report ``stopping`` before
    #: revoking its access anyway (a daemon that does not answer is revoked at once).
    stop_wait_s: float = 3.0
    # hosts (docs/hosts.md)
    #: This provisioner's host: the machines it starts record it (``hostId``), and it
    #: heartbeats under it. Every provisioner replica on one host shares it; default: the
    #: host's name.
    host_id: str = msgspec.field(default_factory=socket.gethostname)
    #: How many running machines this host takes (stopped ones do not count); past it, its
    #: provisioner stops taking ``machine.created``. 0: no limit.
    host_capacity: int = 0
    #: Memory this host keeps free (MiB of its available memory: ``/proc/meminfo``'s
    #: MemAvailable, or ``memory_cgroup``'s room where lower): below it, its
    #: provisioner takes no new machine, whatever its capacity. 0: off.
    host_min_available_mb: int = 0
    #: A memory cgroup (its directory: ``/sys/fs/cgroup/memory/<group>`` on cgroup v1,
    #: ``/sys/fs/cgroup/<group>`` on v2) the platform and its machines run in: its limit less
    #: its usage is this host's available memory wherever that is lower than MemAvailable
    #: (providers/host_memory.py). Empty: ``/proc/meminfo`` alone.
    memory_cgroup: str = ""
    #: Memory pressure (docs/stop-start.md#memory-pressure): while this host's available
    #: memory is under this many MiB, its provisioner pauses its longest-idle gvisor machines
    #: (each keeps its memory on disk) before the kernel's OOM killer ends anything; it stops
    #: once the host is back above 1.5 times this. 0: off.
    pause_under_mb: int = 256
    #: The most machines one round of memory pressure pauses (a round waits for the pauses it
    #: asked to be done, so that their memory is freed, before it asks more).
    pause_per_round: int = 2
    #: A machine with gateway activity in the last this many seconds is busy: memory pressure
    #: never pauses it (its next call would wake it at once).
    pause_idle_min_s: float = 60.0
    #: Seconds between a provisioner's readings of its host's available memory.
    memory_pressure_tick_s: float = 1.0
    #: Seconds between a provisioner's heartbeats for its host.
    host_heartbeat_s: float = 5.0
    #: A host with no heartbeat for this long is ``lost`` in hosts.list.
    host_lost_after_s: float = 30.0
    #: Once a host has been lost this long, the prober rebuilds each of its lost machines (its
    #: instance's current one) on a live host with room. 0: off (a user rebuilds them).
    host_lost_rebuild_s: float = 0.0
    #: A create that no host with room takes for this long fails ("no host with capacity").
    placement_timeout_s: float = 120.0
    #: Seconds between a provisioner's sweeps of its host's snapshot copies and memory images
    #: that no record holds (services/provisioner/sweep.py); one runs at its start too.
    sweep_interval_s: float = 600.0
    #: Copies and memory images the platform made or changed this recently are never swept,
    #: whatever the records say: the moments between a take's end and its records.
    sweep_grace_s: float = 900.0
    # boot
    #: How long a booting machine's daemon has to report ready before the machine fails,
    #: counted only while the platform watches it: from its daemon's (re)start, from the
    #: platform's return after it was stopped, and for a fork from its restore
    #: (docs/pipeline.md#deadlines). Also how long a resumed machine's daemon has to answer.
    boot_timeout_s: float = 120.0
    #: How much longer a booting machine is waited for, past FLEET_BOOT_TIMEOUT_S, while its
    #: host says its daemon runs (a loaded host, a slow restore) or cannot be asked; then it
    #: fails.
    boot_alive_max_s: float = 900.0
    # versions
    #: The git SHA the platform runs (deployments set it); empty: the code repo's HEAD.
    git_sha: str = ""
    #: The git repository machines get their daemon code from on machines.refreshCode;
    #: empty: the checkout fleetd runs from.
    code_repo: str = ""
    # local machines
    #: ``bwrap``: each local machine in its own bubblewrap sandbox; ``none``: not isolated at
    #: all (``fleet up --no-sandbox``; only where bwrap cannot run).
    sandbox: Literal["bwrap", "none"] = "bwrap"
    #: ``own``: each sandboxed machine has a network namespace of its own, reaching out through
    #: ``pasta`` (providers/sandbox/netns.py); ``host``: the host's network, every loopback port of
    #: the host and of the other machines reachable (a baseline for benchmarks; not isolated).
    sandbox_network: Literal["own", "host"] = "own"
    #: Ports of the host's loopback every sandboxed machine reaches on its own loopback, beside
    #: NATS's (comma-separated; e.g. a git mirror on the host's loopback). Empty: none.
    sandbox_loopback_ports: str = ""
    #: Host paths every sandboxed machine may read (``:``-separated; e.g. a repository mirror).
    sandbox_share: str = ""
    #: Machines kept started ahead of demand, per provider: ``local=2`` (``provider=n`` pairs,
    #: comma-separated; ``local`` needs the bwrap sandbox; ``docker=1`` too, at most
    #: ``MAX_DOCKER_POOL`` in all). ``docker@IMAGE=n``: machines of the environment
    #: ``{image: IMAGE}`` (docs/environments.md). ``local:gvisor=n``: gvisor sandboxes
    #: (docs/runtimes.md); where ``runtime`` is gvisor, ``local=n`` keeps n of those too, unless
    #: ``local:gvisor`` is given. Each provisioner process keeps its own. Empty or 0: every
    #: machine starts cold.
    warm_pool: str = ""
    #: Below this much available memory (MiB, as ``host_min_available_mb`` reads it) the pool
    #: shrinks, one machine a second, and is not refilled.
    warm_pool_min_available_mb: int = 512
    #: ``first-last``: each sandboxed local machine runs as a uid of its own from this range
    #: (providers/sandbox/machine_uid.py); empty: as the platform's user, without capabilities.
    sandbox_uids: str = "200000-265535"
    #: Local homes' filesystem (providers/local/homes.py): ``btrfs``, copy-on-write homes on the
    #: data dir's btrfs or on an image fleetd makes and mounts; ``auto``, so where the data dir
    #: is btrfs or that image was made; ``plain``, directories (a fork is a plain copy).
    homes_fs: Literal["auto", "btrfs", "plain"] = "auto"
    #: The size of that image (sparse: disk is used as homes grow), GiB.
    homes_image_gb: int = 64
    #: The provider of machines.create without one (fleet up --provider local|docker).
    default_provider: Literal["local", "docker"] = "local"
    #: The runtime of machines.create without one, for instances without their own
    #: (fleet up --runtime namespaces|gvisor; docs/runtimes.md).
    runtime: Literal["namespaces", "gvisor"] = "namespaces"
    #: The runsc that runs gvisor machines (a name on PATH, or a path).
    runsc: str = "runsc"
    #: The gVisor platform gvisor machines run on (ptrace works on every host; docs/runtimes.md).
    gvisor_platform: Literal["ptrace", "systrap", "kvm"] = "ptrace"
    #: Seconds a gvisor machine's daemon has to let its NATS connection go for a pause; past
    #: that (a process of the machine holds a connection to NATS's port too), it is refused.
    gvisor_park_wait_s: float = 15.0
    #: Every machine's limits, both providers (docker: the container's; local: its cgroup).
    machine_memory_mb: int = 1024
    machine_cpus: float = 1.0
    machine_pids: int = 512
    #: What no instance's own limits may exceed (instances.setLimits; admin only above the
    #: defaults above).
    machine_max_memory_mb: int = 16384
    machine_max_cpus: float = 8.0
    machine_max_pids: int = 8192
    # docker machines (providers/docker/provider.py); the engine is DOCKER_HOST's, else the local
    # one
    #: The machine image's base when a registry is reachable; empty: built offline from
    #: Debian packages (debootstrap with this host's apt sources).
    docker_base_image: str = "python:3.11-slim"
    #: The user-defined bridge network of the machines (no traffic between containers).
    docker_network: str = "fleet-machines"
    #: Keep an archived machine's home volume (default: removed with its container).
    docker_keep_volumes: bool = False
    #: ``first-last``: each docker machine runs as a host uid of its own from this range, apart
    #: from ``sandbox_uids``, so that no kernel limit a uid holds (inotify instances) is shared
    #: between tenants (providers/docker/users.py); empty: as the image's user (uid 1000).
    docker_uids: str = "300000-365535"
    # environments (environments/): builds of Dockerfiles and devcontainer.json on the engine
    #: The builds kept on the engine, in bytes; the least recently used go first (0: no cap).
    env_cache_bytes: int = 20 * 1024**3
    #: How long an OCI devcontainer feature's registry has to answer before the build fails.
    env_feature_timeout_s: float = 20.0
    #: Hosts (comma-separated) an OCI feature's registry may redirect its layer's download to,
    #: over https and without the registry's token (ghcr.io keeps its layers on these); any
    #: other redirect off the registry is refused.
    env_feature_blob_hosts: str = (
        "pkg-containers.githubusercontent.com,github-production-container-registry.s3.amazonaws.com"
    )
    #: How long one environment build may take.
    env_build_timeout_s: float = 3600.0
    #: The memory (no swap) each step of an environment build may use; a step over it is
    #: killed and the build fails with 1628 BuildLimitExceeded.
    env_build_memory_mb: int = 4096
    #: The CPUs each step of an environment build may use.
    env_build_cpus: float = 2.0
    #: What one build may write: its steps' writes together, and the image it makes (its base
    #: included); over it, 1628 BuildLimitExceeded and nothing of the build is kept.
    env_build_disk_mb: int = 20480
    #: How long each git command of the host-side clone of a repo (to read its
    #: devcontainer.json or Dockerfile) may take.
    env_clone_timeout_s: float = 300.0
    #: The CPU seconds each git command of the host-side clone may use.
    env_clone_cpu_s: int = 300
    #: The address space each git command of the host-side clone may use.
    env_clone_memory_mb: int = 4096
    #: What the host-side checkout of a repo may hold (its .git included) and the largest file
    #: it may write; over it, 1628 BuildLimitExceeded and the checkout is removed.
    env_clone_disk_mb: int = 2048
    # codemode (services/codemode): runs at once per replica, and each run's sandbox limits
    codemode_concurrency: int = 20
    codemode_cpu_s: int = 60
    codemode_memory_mb: int = 512
    codemode_processes: int = 64
    #: Where each run's code executes: bubblewrap's namespaces, or a gVisor sandbox (runsc,
    #: FLEET_RUNSC, on FLEET_GVISOR_PLATFORM; docs/codemode.md).
    codemode_runtime: Literal["namespaces", "gvisor"] = "namespaces"
    # auth callout
    #: Account nkey seed ("SA...") with which the auth callout signs its answers and the
    #: machines' user JWTs; its public key is the server's ``auth_callout.issuer``.
    callout_issuer_seed: str = ""
    #: The NATS account the callout binds machines to (where the services and the stream are).
    callout_account: str = "APP"
    #: The largest message a machine may publish (its JWT's payload limit): its answers
    #: (command output) included, so at least FLEET_EXEC_OUTPUT_CAP twice, plus room.
    machine_max_payload: int = 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        names = set(cls.__struct_fields__)
        raw = {
            key[len(PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in names
        }
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(name_env_var(str(exc), raw, Settings)) from None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def sandbox_uid_range(self) -> tuple[int, int] | None:
        """``sandbox_uids`` as (first, last); None when empty."""
        return _uid_range("FLEET_SANDBOX_UIDS", self.sandbox_uids)

    @property
    def docker_uid_range(self) -> tuple[int, int] | None:
        """``docker_uids`` as (first, last); None when empty. Never a uid of ``sandbox_uids``:
        a docker machine and a local one of a uid would share its limits."""
        mine = _uid_range("FLEET_DOCKER_UIDS", self.docker_uids)
        local = self.sandbox_uid_range
        if mine is not None and local is not None and mine[0] <= local[1] and local[0] <= mine[1]:
            raise SettingsError(f"FLEET_DOCKER_UIDS: {self.docker_uids!r} overlaps "
                                f"FLEET_SANDBOX_UIDS {self.sandbox_uids!r}")  # fmt: skip
        return mine

    @property
    def sandbox_shared(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in self.sandbox_share.split(":") if p)

    @property
    def sandbox_forwarded(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.sandbox_loopback_ports.split(",") if p.strip())

    @property
    def warm_pool_sizes(self) -> dict[str, int]:
        """By pool: ``local`` (namespaces), ``local:gvisor``, ``docker``, ``docker@IMAGE``."""
        sizes = parse_warm_pool(self.warm_pool)
        if self.runtime == "gvisor" and "local" in sizes:  # creates are gvisor by default
            sizes.setdefault(GVISOR_POOL, sizes["local"])
        return sizes

    def __post_init__(self) -> None:
        parse_warm_pool(self.warm_pool)  # a bad value stops the process at start, named
        _ = self.preview  # a bad template stops the process at start, named
        if not 0 <= self.preview_port <= 65535 or (
            self.preview_port and self.preview_port == self.port
        ):
            raise ValueError(f"FLEET_PREVIEW_PORT: {self.preview_port} is not a port of its own "
                             f"(0-65535, not FLEET_PORT's {self.port})")  # fmt: skip
        try:
            ports = self.sandbox_forwarded
        except ValueError:
            ports = (0,)
        if not all(0 < p < 65536 for p in ports):
            raise ValueError(f"FLEET_SANDBOX_LOOPBACK_PORTS: {self.sandbox_loopback_ports!r} "
                             "is not a comma-separated list of ports")  # fmt: skip
        _ = self.sandbox_uid_range, self.docker_uid_range  # likewise (read by the provisioner)
        check_prefix(self.key_prefix)
        if self.paused_stop_after_s < 0:
            raise ValueError(f"FLEET_PAUSED_STOP_AFTER_S: {self.paused_stop_after_s} is not "
                             ">= 0 (0: never)")  # fmt: skip
        if self.autopause_idle_s < 0:
            raise ValueError(f"FLEET_AUTOPAUSE_IDLE_S: {self.autopause_idle_s} is not "
                             ">= 0 (0: never)")  # fmt: skip
        if self.activity_write_s < 0:
            raise ValueError(f"FLEET_ACTIVITY_WRITE_S: {self.activity_write_s} is not >= 0")
        if not self.boot_timeout_s > 0 or self.boot_alive_max_s < 0:
            raise ValueError(
                f"FLEET_BOOT_TIMEOUT_S ({self.boot_timeout_s}) is not > 0, or "
                f"FLEET_BOOT_ALIVE_MAX_S ({self.boot_alive_max_s}) is not >= 0"
            )
        if not self.wake_timeout_s > 0:
            raise ValueError(f"FLEET_WAKE_TIMEOUT_S: {self.wake_timeout_s} is not > 0")
        if self.pause_under_mb < 0 or self.pause_per_round < 1 or self.pause_idle_min_s < 0:
            raise SettingsError(f"FLEET_PAUSE_UNDER_MB ({self.pause_under_mb}), "
                                f"FLEET_PAUSE_PER_ROUND ({self.pause_per_round}) and "
                                f"FLEET_PAUSE_IDLE_MIN_S ({self.pause_idle_min_s}) are not "
                                ">= 0, >= 1 and >= 0")  # fmt: skip
        if not self.memory_pressure_tick_s > 0:
            raise SettingsError(
                f"FLEET_MEMORY_PRESSURE_TICK_S: {self.memory_pressure_tick_s} is not > 0"
            )
        if self.host_capacity < 0:
            raise ValueError(f"FLEET_HOST_CAPACITY: {self.host_capacity} is not >= 0")
        if not self.host_id or any(c.isspace() for c in self.host_id):
            raise ValueError(f"FLEET_HOST_ID: {self.host_id!r} is empty or has a space")
        if self.rpc_batch_concurrency < 1:
            raise ValueError(
                f"FLEET_RPC_BATCH_CONCURRENCY: {self.rpc_batch_concurrency} is not >= 1"
            )
        if not 1 <= self.metrics_sample_s <= 60:
            raise SettingsError(f"FLEET_METRICS_SAMPLE_S: {self.metrics_sample_s} is not 1 to 60")
        if not self.metrics_sample_s <= self.metrics_disk_s <= 3600:
            raise SettingsError(
                f"FLEET_METRICS_DISK_S: {self.metrics_disk_s} is not "
                f"FLEET_METRICS_SAMPLE_S ({self.metrics_sample_s}) to 3600"
            )
        if not self.sweep_interval_s > 0:
            raise SettingsError(f"FLEET_SWEEP_INTERVAL_S: {self.sweep_interval_s} is not > 0")
        if not self.sweep_grace_s > 0:
            raise SettingsError(f"FLEET_SWEEP_GRACE_S: {self.sweep_grace_s} is not > 0")
        if self.instance_disk_mb < 0:
            raise SettingsError(f"FLEET_INSTANCE_DISK_MB: {self.instance_disk_mb} is not >= 0")
        if self.disk_walk_entries < 1:
            raise SettingsError(f"FLEET_DISK_WALK_ENTRIES: {self.disk_walk_entries} is not >= 1")
        if not self.disk_walk_s > 0:
            raise SettingsError(f"FLEET_DISK_WALK_S: {self.disk_walk_s} is not > 0")
        _ = self.webhook_retry_steps, self.webhook_allowances  # named at start if bad
        if not self.webhook_timeout_s > 0 or min(
            self.webhook_concurrency, self.webhook_instance_concurrency,
            self.webhook_queue_max_events, self.webhook_queue_max_bytes) < 1:  # fmt: skip
            raise SettingsError("FLEET_WEBHOOK_TIMEOUT_S, FLEET_WEBHOOK_CONCURRENCY, "
                                "FLEET_WEBHOOK_INSTANCE_CONCURRENCY and FLEET_WEBHOOK_QUEUE_MAX_* "
                                "are not all positive")  # fmt: skip
        if not self.egress_dns_rate > 0 or self.egress_dns_concurrency < 1:
            raise ValueError(f"FLEET_EGRESS_DNS_RATE ({self.egress_dns_rate}) and "
                             f"FLEET_EGRESS_DNS_CONCURRENCY ({self.egress_dns_concurrency}) "
                             "are not positive")  # fmt: skip

    @property
    def e2b_templates(self) -> dict[str, str]:
        """``FLEET_E2B_TEMPLATES_SPEC``: a template's name -> its image."""
        out = {}
        for entry in filter(None, (e.strip() for e in self.e2b_templates_spec.split(","))):
            name, sep, image = entry.partition("=")
            if not sep or not name.strip() or not image.strip():
                raise SettingsError(f"FLEET_E2B_TEMPLATES_SPEC: {entry!r} is not name=image")
            out[name.strip()] = image.strip()
        return out

    @property
    def webhook_retry_steps(self) -> tuple[float, ...]:
        try:
            steps = tuple(float(s) for s in self.webhook_retry_steps_s.split(","))
        except ValueError:
            steps = ()
        if not steps or not all(s >= 0 for s in steps):
            raise SettingsError(f"FLEET_WEBHOOK_RETRY_STEPS_S: {self.webhook_retry_steps_s!r} "
                                "is not a comma-separated list of seconds")  # fmt: skip
        return steps

    @property
    def webhook_allowances(
        self,
    ) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None], ...]:
        """``FLEET_WEBHOOK_ALLOW_PRIVATE``'s entries: a network and its one port (None: any);
        ``NET``, ``NET:PORT`` or ``[V6NET]:PORT``."""
        out = []
        for entry in filter(None, (e.strip() for e in self.webhook_allow_private.split(","))):
            net, port = entry, None
            if entry.startswith("[") and "]:" in entry:
                net, _, port = entry[1:].partition("]:")
            elif entry.count(":") == 1:
                net, _, port = entry.partition(":")
            try:
                number = int(port) if port is not None else None
                if number is not None and not 1 <= number <= 65535:
                    raise ValueError(port)
                out.append((ipaddress.ip_network(net.strip("[]"), strict=False), number))
            except ValueError:
                raise SettingsError(
                    f"FLEET_WEBHOOK_ALLOW_PRIVATE: {entry!r} is not a network (CIDR or "
                    "address) with an optional :port"
                ) from None
        return tuple(out)

    @property
    def preview(self) -> PreviewOrigin:
        """Where previews are served (the default names ``preview_port``)."""
        return parse_preview_origin(
            self.preview_origin or default_preview_origin(self.preview_port)
        )

    @property
    def ca_bundle_path(self) -> Path | None:
        return Path(self.ca_bundle) if self.ca_bundle else None

    @property
    def upstream_cas(self) -> tuple[str, ...]:
        """The PEM bundles a machine's clone trusts besides the system's CAs, which git on the
        platform's host trusts too: ``FLEET_CA_BUNDLE`` (a machine's git reads it from its
        .env) and ``FLEET_SECRETS_UPSTREAM_CA`` (the egress proxy's, for the upstream of a
        machine's clone of a private repo)."""
        return tuple(f for f in (self.ca_bundle, self.secrets_upstream_ca) if f)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            out[PREFIX + name.upper()] = str(value)
        return out


#: The most docker machines one provisioner keeps warm: each pooled container holds two of the
#: engine client's 100 connections (its stdin attach and its ``wait``) until it is claimed, and
#: the starts, stops and inspections of every other machine need the rest.
MAX_DOCKER_POOL = 32
_IMAGE_REF = re.compile(IMAGE_REF_PATTERN)


#: The warm pool of the local provider's gvisor machines (providers/local/gvisor_pool.py).
GVISOR_POOL = "local:gvisor"


def parse_warm_pool(raw: str) -> dict[str, int]:
    """``local=2,docker=1,docker@node:22=1`` -> {"local": 2, "docker": 1, "docker@node:22": 1};
    ``local:gvisor=1`` -> {"local:gvisor": 1}; ValueError naming FLEET_WARM_POOL."""
    sizes: dict[str, int] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, eq, count = part.rpartition("=")
        provider, at, image = name.strip().partition("@")
        if provider == GVISOR_POOL and not at:
            provider = "local"
        if (not eq or provider not in ("local", "docker") or not count.strip().isdigit()
                or (at and (provider != "docker" or not _IMAGE_REF.fullmatch(image)))):  # fmt: skip
            raise ValueError(
                f"FLEET_WARM_POOL: {part!r} is not provider=count (local, local:gvisor or "
                "docker, count >= 0) or docker@IMAGE=count"
            )
        sizes[name.strip()] = int(count)
    docker = sum(n for name, n in sizes.items() if name.partition("@")[0] == "docker")
    if docker > MAX_DOCKER_POOL:
        raise ValueError(
            f"FLEET_WARM_POOL: {docker} docker machines is more than {MAX_DOCKER_POOL} (each "
            "pooled container holds two of the docker engine client's 100 connections)"
        )
    return sizes
