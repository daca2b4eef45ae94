"""The machine's ports: those listening (``listening``), and a connection to one of them joined to
a byte stream (``tunnel``)."""
