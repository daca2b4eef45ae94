"""The code interpreter on docker machines (docs/code-interpreter.md), with real kernels in real
containers: in the platform's machine image the kernels' runtime comes with the daemon's
(nothing installed by the machine's user), state carries across calls, bash and the
interpreter's rules (tests/code_checks.py, ``pip install`` into the machine's site among them);
in a machine of the ``code-interpreter`` environment (environments/code-interpreter/, built from
PyPI's wheels) the Python kernel runs on the environment's Python, and a matplotlib figure is an
``image/png``. The interpreter's own behaviours: tests/integration/test_code_interpreter.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import sys
import time
from pathlib import Path
from subprocess import PIPE, STDOUT

import aiodocker
import pytest

from base.version import SOURCE_ROOT
from contracts.daemon.code import CodeRunResult
from contracts.gateway.environments import Environment
from fleet.client import FleetClient
from providers.docker.image import host_apt_source
from tests.code_checks import every_rule, make_wheel
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.environments import out, ready
from tests.integration.test_docker import ready_machine

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

ENVIRONMENT = SOURCE_ROOT / "environments" / "code-interpreter"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def main_text(result: CodeRunResult) -> list[str]:
    assert result.error is None, result.error
    return [r["text/plain"] for r in result.results if r.get("isMain")]


@pytest.mark.timeout(600)
async def test_state_carries_across_calls_in_a_docker_machine(
    stack: FleetClient, tmp_path: Path
) -> None:
    mid = await ready_machine(stack, "code-docker")
    listed = await stack.machines_code_list_contexts(mid)
    assert listed.languages == ["bash", "python"]
    first = await stack.machines_code_run(machine_id=mid, code="x = 41")
    assert (first.results, first.error) == ([], None)
    assert main_text(await stack.machines_code_run(machine_id=mid, code="x + 1")) == ["42"]
    bash = await stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(bash.stdout), bash.error) == ("hi\n", None)
    await every_rule(stack, mid, tmp_path)


async def _run(*argv: str, cwd: Path | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdout=PIPE, stderr=STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


async def _python_of(docker: aiodocker.Docker, image: str) -> str:
    """The image's Python as pip's ``--python-version`` names it (``3.13``): its wheels are
    fetched by this host's pip, whose Python may be another."""
    ask = "import sys; print('%d.%d' % sys.version_info[:2])"
    container = await docker.containers.run({"Image": image, "Cmd": ["python3", "-c", ask]})
    try:
        await container.wait(timeout=120)
        return "".join(await container.log(stdout=True)).strip()
    finally:
        await container.delete(force=True)


async def code_interpreter_image(tmp_path: Path) -> str:
    """The environment built as shipped, on the platform's own Debian base (this host reaches
    no image registry): its wheels fetched from PyPI by this host's pip (whose proxy a build
    container does not trust) into the build context's ``wheels/``, which install.py takes."""
    files = sorted(p for p in ENVIRONMENT.iterdir() if p.is_file())
    key = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()
    tag = f"fleet-test-code-interpreter:{key[:12]}"
    suite = host_apt_source()[1]  # the machine image's base is of this host's suite
    async with aiodocker.Docker() as docker:
        bases = await docker.images.list(filters={"reference": [f"fleetd-base:{suite}-*"]})
        assert bases, "no fleetd-base image: the machine image's build makes it"
        base = max(bases, key=lambda i: i["Created"])["RepoTags"][0]
        python = await _python_of(docker, base)
    context = tmp_path / "code-interpreter"
    shutil.copytree(ENVIRONMENT, context)
    began = time.monotonic()
    await _run(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
               "--python-version", python, "-d", str(context / "wheels"), "pip",
               "-r", str(context / "requirements.txt"))  # fmt: skip
    fetched = time.monotonic()
    await _run("docker", "build", "-q", "--build-arg", f"BASE={base}", "-t", tag, ".",
               cwd=context)  # fmt: skip
    print(
        f"code-interpreter environment: wheels {fetched - began:.1f}s, "
        f"build {time.monotonic() - fetched:.1f}s"
    )
    return tag


@pytest.mark.timeout(1200)
async def test_a_matplotlib_figure_in_the_code_interpreter_environment_is_a_png(
    stack: FleetClient, tmp_path: Path
) -> None:
    image = await code_interpreter_image(tmp_path)
    inst = await stack.create_instance("code-env")
    await stack.set_environment(inst.id, Environment(image=image))
    mid = await ready(stack, inst.id, "docker")
    where = await stack.machines_code_run(machine_id=mid, code="import sys; sys.prefix")
    assert main_text(where) == ["'/opt/code-interpreter'"]  # the environment's own Python
    code = ("import numpy as np, pandas as pd\nimport matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3])\nplt.show()\nint(pd.Series(np.arange(4)).sum())")  # fmt: skip
    got = await stack.machines_code_run(machine_id=mid, code=code)
    assert main_text(got) == ["6"]
    (figure,) = [r for r in got.results if "image/png" in r]
    assert base64.b64decode(figure["image/png"]).startswith(PNG_MAGIC)
    assert figure["isMain"] is False
    # A package pip-installed in the machine is importable in the kernel's next call.
    wheel = make_wheel(tmp_path, "fleet_probe")
    await stack.upload(mid, wheel, wheel.name)
    await out(stack, mid, "python3", "-m", "pip", "install", "-q", "--no-index", wheel.name)
    probe = await stack.machines_code_run(machine_id=mid, code="import fleet_probe\nfleet_probe.N")
    assert main_text(probe) == ["42"]
    # bash's kernel is the platform's, from its read-only runtime (no PYTHONPATH in an
    # environment's machine: the kernel's first line finds it).
    bash = await stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(bash.stdout), bash.error) == ("hi\n", None)
