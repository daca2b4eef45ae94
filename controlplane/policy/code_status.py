"""How the code a machine's daemon runs relates to the platform's: git ancestry in the
platform's code repo (FLEET_CODE_REPO), asked once per SHA.

A daemon's SHA comes from the machine, which is not trusted: only a full hexadecimal object
name ever reaches git (never a ref, a revision expression or an option), and the answers are
kept in a bounded cache, so a daemon reporting made-up SHAs costs one git call per SHA, and
each git call is time-limited and one of a few at a time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from pathlib import Path

import structlog

from contracts.models import CodeStatus

log = structlog.get_logger(__name__)

#: A full object name: SHA-1 (40) or SHA-256 (64) hex digits, lower case as git prints them.
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: ``git merge-base --is-ancestor`` exits 0 (yes), 1 (no), anything else: it could not tell.
_YES, _NO = 0, 1


class CodeVersions:
    """``status(daemon_sha)``: current, behind, ahead, diverged or unknown.

    Ancestry between two commits never changes, so a definite answer is cached for good (up to
    ``cache_size`` SHAs, least recently used first out). ``unknown`` (the repo lacks the
    commit, or git failed) is cached for ``unknown_ttl_s`` only: the repo may be fetched.
    """

    def __init__(
        self,
        repo: Path | None,
        platform_sha: str | None,
        *,
        cache_size: int = 4096,
        unknown_ttl_s: float = 60.0,
        timeout_s: float = 5.0,
        concurrency: int = 4,
    ) -> None:
        self.repo = repo
        self.platform_sha = platform_sha
        self._cache: OrderedDict[str, tuple[CodeStatus, float]] = OrderedDict()
        self._cache_size = cache_size
        self._unknown_ttl_s = unknown_ttl_s
        self._timeout_s = timeout_s
        self._gate = asyncio.Semaphore(concurrency)
        self._pending: dict[str, asyncio.Task[CodeStatus]] = {}
        #: git calls made (the cache's effect is visible in tests and benchmarks).
        self.git_calls = 0

    async def status(self, daemon_sha: str | None) -> CodeStatus:
        platform = self.platform_sha
        if not platform or not daemon_sha or not _FULL_SHA.fullmatch(daemon_sha):
            return "unknown"
        if daemon_sha == platform:
            return "current"
        if self.repo is None:
            return "unknown"
        if (cached := self._cached(daemon_sha)) is not None:
            return cached
        task = self._pending.get(daemon_sha)
        if task is None:  # one git question per SHA, however many callers ask at once
            task = asyncio.create_task(self._lookup(daemon_sha, platform), name="code-status")
            self._pending[daemon_sha] = task
        # A caller that goes away (its request cancelled) leaves the lookup to the others.
        return await asyncio.shield(task)

    async def _lookup(self, sha: str, platform: str) -> CodeStatus:
        try:
            answer = await self._ask(sha, platform)
            self._remember(sha, answer)
            return answer
        finally:
            del self._pending[sha]

    def _cached(self, sha: str) -> CodeStatus | None:
        hit = self._cache.get(sha)
        if hit is None:
            return None
        answer, expires = hit
        if expires < time.monotonic():
            del self._cache[sha]
            return None
        self._cache.move_to_end(sha)
        return answer

    def _remember(self, sha: str, answer: CodeStatus) -> None:
        ttl = self._unknown_ttl_s if answer == "unknown" else float("inf")
        self._cache[sha] = (answer, time.monotonic() + ttl)
        self._cache.move_to_end(sha)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _ask(self, daemon: str, platform: str) -> CodeStatus:
        behind = await self._is_ancestor(daemon, platform)
        if behind is None:
            return "unknown"
        if behind:
            return "behind"
        ahead = await self._is_ancestor(platform, daemon)
        if ahead is None:
            return "unknown"
        return "ahead" if ahead else "diverged"

    async def _is_ancestor(self, older: str, newer: str) -> bool | None:
        """Is ``older`` an ancestor of ``newer``; None: git cannot tell (a commit is missing,
        no repo, git failed or took too long)."""
        assert self.repo is not None
        async with self._gate:
            self.git_calls += 1
            try:
                proc = await asyncio.create_subprocess_exec(
                    "git", "-C", str(self.repo), "merge-base", "--is-ancestor", older, newer,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as exc:
                log.warning("code_status.git_unavailable", repo=str(self.repo), error=str(exc))
                return None
            try:
                _, err = await asyncio.wait_for(proc.communicate(), self._timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                log.warning("code_status.git_timeout", repo=str(self.repo), sha=older)
                return None
        if proc.returncode in (_YES, _NO):
            return proc.returncode == _YES
        log.info("code_status.unknown_commit", repo=str(self.repo), sha=older,
                 error=err.decode(errors="replace").strip()[:200])  # fmt: skip
        return None
