"""Codemode: run Python in a sandbox against the fleet's tools (see ``service``)."""
