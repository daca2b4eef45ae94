"""MacKey's HMAC-SHA256 (RFC 2104 on hashlib.sha256): the RFC 4231 vectors, and the same MACs
as the standard library's hmac, on OpenSSL's SHA-256 here and on Python's builtin one in a
process that never loads OpenSSL (as the daemon runs, daemon/lean.py)."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import subprocess
import sys
from collections.abc import Callable

import pytest

from contracts.daemon.signing import MacKey

#: RFC 4231 section 4: (key, data, HMAC-SHA-256); case 5's output is truncated to 128 bits.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than "
     b"block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]  # fmt: skip


def builtin_sha256() -> Callable[[bytes], object]:
    try:
        return importlib.import_module("_sha256").sha256  # type: ignore[no-any-return]
    except ImportError:  # 3.12 and later
        return importlib.import_module("_sha2").sha256  # type: ignore[no-any-return]


@pytest.mark.parametrize("impl", ["openssl", "builtin"])
@pytest.mark.parametrize(("key", "data", "mac"), RFC4231)
def test_rfc4231_vectors(key: bytes, data: bytes, mac: str, impl: str) -> None:
    sha256 = builtin_sha256() if impl == "builtin" else hashlib.sha256
    assert MacKey(key, sha256=sha256).hexmac(data).startswith(mac)
    assert MacKey(key, sha256=sha256).hexmac(data[:3], data[3:]).startswith(mac)  # joined


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1024, 100_000])
def test_same_as_the_standard_library(size: int) -> None:
    key = MacKey(hashlib.sha256(b"k").digest())
    data = bytes(i % 251 for i in range(size))
    assert key.hexmac(data) == hmac.new(key, data, hashlib.sha256).hexdigest()
    assert key.hexmac(data) == key.hexmac(data)  # the keyed states are copied, never used up


#: In a process that imports hashlib as the daemon does (OpenSSL kept out), the builtin
#: SHA-256 computes the same MACs.
BUILTIN = """
import sys
from daemon.lean import defer_openssl
defer_openssl()
import hashlib
try:
    import _sha256 as builtin  # to 3.11
except ImportError:
    import _sha2 as builtin  # 3.12 on
assert type(hashlib.sha256()) is type(builtin.sha256()), hashlib.sha256
from contracts.daemon.signing import MacKey
for key, data in [(b"Jefe", b"what do ya want for nothing?"), (b"\\xaa" * 131, b"x" * 3000)]:
    print(MacKey(key).hexmac(data))
assert "_hashlib" not in sys.modules
"""


def test_builtin_sha256_gives_the_same_macs() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BUILTIN], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    expected = [
        hmac.new(b"Jefe", b"what do ya want for nothing?", "sha256").hexdigest(),
        hmac.new(b"\xaa" * 131, b"x" * 3000, "sha256").hexdigest(),
    ]
    assert out == expected
