"""fleet: the CLI (``fleet.cli``), the ``fleet up`` supervisor (``fleet.up``), and the typed
client library for the gateway (``fleet.client``).
"""

#: Where the gateway of `fleet up` on this host answers by default: the client's URL and the
#: CLI's ``--url`` unless told otherwise (``FLEET_URL``).
DEFAULT_URL = "http://127.0.0.1:8080"
