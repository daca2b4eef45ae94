"""Every file generated from contracts/ and committed: the one list ``python -m codegen``
writes and checks."""

from __future__ import annotations

from codegen import asyncapi, jsmodule, pyclient, tstypes
from codegen.generated import Generated

GENERATED: tuple[Generated, ...] = (
    Generated(pyclient.MODULE_PATH, pyclient.render),
    Generated(tstypes.MODULE_PATH, tstypes.render),
    Generated(jsmodule.MODULE_PATH, jsmodule.render),
    Generated(asyncapi.DOCUMENT_PATH, asyncapi.render),
)
