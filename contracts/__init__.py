"""fleetd's contracts: every subject, event, JSON-RPC method, error code and status value.

Services, the daemon, the CLI and the generated API documents import from here; nothing else
spells a subject string or an error code.
"""
