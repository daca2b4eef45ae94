"""``python -m fleet``: the ``fleet`` command, as its console script runs it (``fleet.cli``'s
``main``), for a Python without the script on its PATH or with flags of its own
(``python -X importtime -m fleet --help``)."""

from fleet.cli import main

if __name__ == "__main__":
    main()
