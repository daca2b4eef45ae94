"""A machine's daemon's side: its JSON-RPC methods (``rpc`` gathers them) and their types by
area, signed requests to it (``signing``), byte streams (``streams``), sessions, cron tables, and
where things live in a machine's home (``machine_files``, ``code_files``)."""
