"""How long a command run on a machine may take (``timeoutS`` of machines.exec and its
streamed twin): apart from the specs, for a client that sends one without loading them."""

#: When the caller gives none.
DEFAULT_EXEC_TIMEOUT_S = 120.0
#: The most a caller may ask for.
MAX_EXEC_TIMEOUT_S = 3600.0
