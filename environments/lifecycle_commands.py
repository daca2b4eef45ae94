"""A devcontainer's lifecycle commands, run in the machine through its daemon, and the
environment its variables make.

When each runs (the spec's): ``onCreateCommand``, ``updateContentCommand`` and
``postCreateCommand`` once per machine, after setup (``ON_CREATE``); ``updateContentCommand``
again when the repos get new content; ``postStartCommand`` at every start (the first included);
``postAttachCommand`` when a terminal session opens. A feature's commands of a stage run before
the file's own, in the features' install order. A command is a shell line (``/bin/sh -c``), an
argv, or an object of named commands run in parallel; a stage's groups run one after the other.
A command that fails stops its stage: ``LifecycleFailed`` says the stage, the command, its exit
code and the last lines of its output, and the machine fails at a stage of that name.

Variables, lowest precedence first: the image's own ``ENV``, platform variables, the file's
``containerEnv``, its ``remoteEnv``, instance variables. Fleet-wide defaults, then the project's
file, then what the instance's owner set for this instance: the more specific wins.
``${containerEnv:VAR}`` in ``remoteEnv`` and in commands reads the container's environment
(the image's ``ENV`` and ``containerEnv``).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import msgspec

from base.dotenv import merge_env
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from environments.devcontainer import Command, Devcontainer, expand_container_env
from environments.users import MachineUser

ON_CREATE = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
ON_UPDATE = ("updateContentCommand",)
ON_START = ("postStartCommand",)
ON_ATTACH = ("postAttachCommand",)
#: Output lines a failure carries.
TAIL_LINES = 20
#: One lifecycle command's time in the machine.
COMMAND_TIMEOUT_S = 3600.0
#: Runs one step's command in the machine (the step: for whoever shows its output as it comes).
Run = Callable[["Step", ExecCommandParams], Awaitable[ExecCommandResult]]
Say = Callable[[str], None]
Ran = Callable[["Step", ExecCommandResult], Awaitable[None]]


class LifecycleFailed(Exception):
    """A lifecycle command failed; ``stage`` is its lifecycle name (the machine's failed
    stage), ``reason`` the line the machine's status gives."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class Step:
    stage: str
    #: The name in an object (parallel) form; None for a string or an argv.
    name: str | None
    argv: list[str]

    def describe(self) -> str:
        shown = self.argv[2] if self.argv[:2] == ["/bin/sh", "-c"] else shlex.join(self.argv)
        return f"{self.name}: {shown}" if self.name else shown


def argv(command: str | list[str]) -> list[str]:
    """A string runs in a shell, an argv as it is (the spec's two forms)."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def groups(stage: str, commands: list[Command]) -> list[list[Step]]:
    """The stage's commands (features' first, the file's last) as groups run one after the
    other, the steps of one group in parallel."""
    out: list[list[Step]] = []
    for command in commands:
        if isinstance(command, dict):
            group = [Step(stage, name, argv(c)) for name, c in command.items() if c]
        else:
            group = [Step(stage, None, argv(command))] if command else []
        if group:
            out.append(group)
    return out


def plan(
    stages: tuple[str, ...],
    dev: Devcontainer | None,
    feature_lifecycle: list[dict[str, Command]],
    *,
    done: Collection[str] = (),
) -> list[tuple[str, list[list[Step]]]]:
    """What to run for ``stages`` (ON_CREATE, ON_START, ...) but those ``done`` already (the
    once-per-machine ones recorded), in order; empty with no devcontainer settings (a machine
    of any other environment runs nothing)."""
    if dev is None:
        return []
    out = []
    for stage in (s for s in stages if s not in done):
        commands = [f[stage] for f in feature_lifecycle if stage in f]
        if stage in dev.lifecycle:
            commands.append(dev.lifecycle[stage])
        if commands:
            out.append((stage, groups(stage, commands)))
    return out


def tail(result: ExecCommandResult, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` of a command's output (stdout, then stderr)."""
    return "\n".join((result.stdout + result.stderr).rstrip("\n").splitlines()[-lines:])


def failure(step: Step, result: ExecCommandResult) -> str:
    """The machine's reason for a failed step: the command, its exit code, its last lines."""
    how = "timed out" if result.timed_out else f"exited {result.exit_code}"
    last = tail(result)
    return f"{step.stage} `{step.describe()}` {how}" + (f":\n{last}" if last else "")


def container_env(image_env: Mapping[str, str], dev: Devcontainer) -> dict[str, str]:
    """The container's environment: the image's, then the file's containerEnv."""
    return {**image_env, **dev.container_env}


class MachineLifecycle(msgspec.Struct, kw_only=True, frozen=True):
    """What a machine's lifecycle commands need, recorded when its environment is built
    (``store.lifecycles``)."""

    devcontainer: Devcontainer
    #: The features' lifecycle commands (``BuiltEnvironment.feature_lifecycle``).
    feature_lifecycle: list[dict[str, Command]] = []
    #: The image's own ``ENV`` (``docker image inspect``'s ``Config.Env``, as a mapping).
    image_env: dict[str, str] = {}
    #: Where the commands run, relative to the home: the repo's checkout (the spec's
    #: workspace folder); None: the home.
    cwd: str | None = None
    #: ``remoteUser`` (else ``containerUser``) in the image (environments/users.py); None:
    #: the provider's default user.
    user: MachineUser | None = None
    #: That user is root in the image: a gvisor machine runs as root of its own kernel
    #: (docs/runtimes.md); any other, as its provider's default user (``user`` is None).
    root: bool = False


def project_env(platform: Mapping[str, str], dev: Devcontainer,
                image_env: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """Platform variables under the file's containerEnv and remoteEnv: the scope the setup
    pusher's .env builder takes as its platform one (instance variables go over it)."""
    inside = container_env(image_env, dev)
    remote = {k: expand_container_env(v, inside) for k, v in dev.remote_env.items()}
    return {**platform, **dev.container_env, **remote}


def machine_env(
    platform: Mapping[str, str],
    instance: Mapping[str, str],
    dev: Devcontainer | None,
    image_env: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every variable of the machine's commands and ``.env``, by the module's precedence
    (``base``: the platform's proxy and CA lines, lowest)."""
    project = dict(platform) if dev is None else project_env(platform, dev, image_env)
    return merge_env(project, instance, {**image_env, **(base or {})})


async def run_stages(
    run: Run,
    todo: list[tuple[str, list[list[Step]]]],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    say: Say,
    done: Callable[[str], Awaitable[None]] | None = None,
    ran: Ran | None = None,
) -> None:
    """Run ``todo`` (``plan``'s) through ``run`` (the machine's daemon), each
    line of output said with its stage, ``ran(step, result)`` after each command and
    ``done(stage)`` after each stage that succeeded. Raises LifecycleFailed at the first
    failing command."""
    inside = dict(env)
    for stage, stage_groups in todo:
        for group in stage_groups:
            results = await asyncio.gather(*(_one(run, s, inside, cwd, say) for s in group))
            for step, result in zip(group, results, strict=True):
                if ran is not None:
                    await ran(step, result)
                if result.exit_code != 0 or result.timed_out:
                    raise LifecycleFailed(stage, failure(step, result))
        if done is not None:
            await done(stage)


async def _one(run: Run, step: Step, env: dict[str, str], cwd: str | None,
               say: Say) -> ExecCommandResult:  # fmt: skip
    say(f"{step.stage}: {step.describe()}")
    command = [expand_container_env(a, env) for a in step.argv]
    result = await run(
        step, ExecCommandParams(command=command, env=env, cwd=cwd, timeout_s=COMMAND_TIMEOUT_S)
    )
    prefix = f"{step.stage}[{step.name}]" if step.name else step.stage
    for line in (result.stdout + result.stderr).splitlines():
        say(f"{prefix}: {line}")
    return result
