"""Machine providers: how a machine is started, stopped and given the platform's code.

Packages: ``local`` (processes on this host, in a bubblewrap or gVisor sandbox), ``docker``
(containers on a Docker engine), ``gvisor`` (the runsc runtime of local machines), ``egress``
(where a machine may connect), ``sandbox`` (what a sandboxed machine is made of on this host).
Beside them, what every provider shares: ``base`` (the provider protocol), ``code`` and
``code_status`` (the daemon's code), ``machine_limits``, ``machine_usage`` (what a machine uses,
read on its host), ``disk_walk`` (what its home takes on disk, bounded and charged to it),
``runtimes``, ``scratch``, ``warm_pool``, ``registry`` (every provider by
name) and ``swarm`` (many daemons in one process, for load tests). The provisioner starts and
stops machines through them, and the gateway's ``machines.refreshCode`` installs code through
them: both import this package, never each other.
"""
