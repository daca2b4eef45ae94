"""JSON-RPC itself, for every side: method specs and dispatch (``jsonrpc``, ``jsonrpc_batch``),
a method that passes through to a daemon's (``pass_through``), declarations on methods
(``marks``), params' rules (``rpc_params``), and the documents made of them (``openrpc``,
``json_schema``)."""
