"""The docs site's tooling: the reference pages generated from the code at build time (an
MkDocs hook, ``docsite/hooks.py``), so that they cannot drift from what the code does."""
