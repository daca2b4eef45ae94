"""fleet-daemon: runs on each machine, reports ready, serves JSON-RPC on NATS. Tiny and dumb:
it never pulls configuration; the platform pushes it."""
