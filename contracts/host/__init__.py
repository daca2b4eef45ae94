"""A machine's host's side: the methods only a machine's own host can do (``rpc``)."""
