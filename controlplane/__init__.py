"""The control plane's shared parts: settings, the Store, the Bus, durable consumers, the
daemon client, metrics, encryption. Every service uses them; the daemon on a machine never
(``./run lint`` enforces it with import-linter)."""
