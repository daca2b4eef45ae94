"""Machine providers: how a machine is started, stopped and given the platform's code.

``local`` runs ``fleet-daemon`` as a process on this host; ``swarm`` runs many daemons in one
process, for load tests. The provisioner starts and stops machines through them, and the
gateway's ``machines.refreshCode`` installs code through them: both import this package, never
each other.
"""
