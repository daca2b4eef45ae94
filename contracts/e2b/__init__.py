"""E2B's protocols as fleetd's E2B front serves them: the control API (``control``) and the
in-sandbox API, envd (``envd``)."""
