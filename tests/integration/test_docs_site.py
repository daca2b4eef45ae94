"""The docs site as `./run lint` builds it (mkdocs --strict, the hook generating the reference):
the built gateway and settings pages name every gateway method and every setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from contracts.gateway.rpc import GATEWAY_METHODS
from controlplane.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_site_names_every_gateway_method_and_setting(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    gateway = (tmp_path / "reference" / "gateway" / "index.html").read_text()
    assert [m.name for m in GATEWAY_METHODS if f"<code>{m.name}</code>" not in gateway] == []
    settings = (tmp_path / "reference" / "settings" / "index.html").read_text()
    names = [PREFIX + f.name.upper() for f in msgspec.structs.fields(Settings)]
    assert [n for n in names if f"<code>{n}</code>" not in settings] == []
