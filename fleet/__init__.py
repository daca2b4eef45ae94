"""fleet: the CLI, the `fleet up` supervisor, and the typed client library for the gateway."""
