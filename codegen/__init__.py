"""The generators: the files made from contracts/ and committed (the Python client's methods,
the TypeScript SDK's types, the console's contract module, the AsyncAPI document).

They read contracts/ and write into the layers above it, so they sit above every layer
(import-linter's layer contract); nothing of the product imports them. ``python -m codegen``
rewrites every stale file, ``--check`` names them (``./run lint`` runs it).
"""
