"""fleetd's base layer: the mechanisms every fleetd process shares, the daemon on a machine
and the platform's services alike.

Logging setup, the code version, the one backoff rule, the NATS connection and the stored
publish with retry, the ``.env`` format (writer and reader), the lock-file format and ``/proc``
process identity. It depends on ``contracts`` and third-party libraries only; nothing here
knows about a service, the daemon or the CLI (``./run lint`` enforces it with import-linter).
"""
