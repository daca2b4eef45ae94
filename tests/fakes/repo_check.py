"""repos.add's check of a repo (environments/repo_check.py) without git or a network: each
URL answers as the test says; any other has every branch."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.errors import FleetError
from contracts.models import GitCredentials


@dataclass
class FakeRepoCheck:
    #: A URL's answer: an error to raise, or a warning to return.
    answers: dict[str, FleetError | str] = field(default_factory=dict)
    #: Each call's (url, branch, credentials), in order.
    calls: list[tuple[str, str, GitCredentials | None]] = field(default_factory=list)

    async def __call__(self, url: str, branch: str, creds: GitCredentials | None) -> str | None:
        self.calls.append((url, branch, creds))
        answer = self.answers.get(url)
        if isinstance(answer, FleetError):
            raise answer
        return answer
