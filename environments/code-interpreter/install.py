"""Install requirements.txt into this Python (the environment's virtualenv) from PyPI's wheels,
with a pip of its own: from ``wheels/`` when the build context has that directory (offline),
else pip's wheel fetched from PyPI. Standard library only: it runs before pip exists."""

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path


def pip_wheel(context: Path, wheels: Path) -> Path:
    """A pip wheel: the context's, else the newest on PyPI."""
    for found in sorted(wheels.glob("pip-*.whl")):
        return found
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as answer:
        files = json.load(answer)["urls"]
    url: str = next(f["url"] for f in files if f["filename"].endswith(".whl"))
    target = Path(tempfile.mkdtemp()) / url.rsplit("/", 1)[-1]
    urllib.request.urlretrieve(url, target)  # noqa: S310 - https, PyPI's own URL
    return target


def main(context: Path) -> None:
    wheels = context / "wheels"
    pip = pip_wheel(context, wheels)
    offline = ["--no-index", "--find-links", str(wheels)] if wheels.is_dir() else []
    subprocess.run(
        [sys.executable, f"{pip}/pip", "install", "--no-cache-dir", "--only-binary=:all:",
         *offline, str(pip), "-r", str(context / "requirements.txt")],
        check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
