"""The gateway's side: its JSON-RPC methods by area (``rpc`` gathers them: ``GATEWAY_METHODS``)
and their types, what it streams (``sse``, ``live``), codemode's methods, the audit log, and a
webhook's wire format."""
