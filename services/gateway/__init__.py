"""The gateway: users' entry point (``python -m services.gateway``).

``compose`` makes every part once, ``http`` routes requests to them; the parts are packages:
``auth`` (callers, access, audit), ``rpc`` (the JSON-RPC methods), ``streams`` (events and byte
streams), ``previews``, ``console`` (sign-in and the browser's session) and ``mcp``.
"""
