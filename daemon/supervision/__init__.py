"""The daemon's life on its machine: its lock, state file and control server (``lifecycle``,
``state``, ``control``, ``commands``), a stop asked (``stops``), a newer daemon taking over
(``takeover``), new code (``update``), a pause (``park``), the warm pool's side (``pool``), the
token kept from the machine's commands (``nodump``), and sudo in a gvisor machine (``sudo``)."""
