"""A real OpenID provider for the tests (tests/oidc/provider.mjs: ``oidc-provider`` from npm,
certified by the OpenID Foundation) on a port it reports, and a user agent that signs in through it
as a browser would (its dev login and consent forms), for tests that drive no browser."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest

SCRIPT = Path(__file__).parent / "oidc" / "provider.mjs"
CLIENT_ID = "fleet"
CLIENT_SECRET = "fleet-test-secret"
ADMIN_GROUP = "fleet-admins"
_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_INPUT = re.compile(r"<input[^>]*>")
_ATTR = re.compile(r'(name|value)="([^"]*)"')


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[str]:
    """The provider's issuer URL; the provider runs for the session (of this worker)."""
    proc = subprocess.Popen(["node", str(SCRIPT)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "" if it died: the assert names it
        assert line.startswith("ready "), f"the OpenID provider did not start: {line!r}"
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def sign_in(
    session: aiohttp.ClientSession, start: str, login: str
) -> tuple[aiohttp.ClientResponse, str]:
    """Follow ``start`` (the gateway's /auth/login) through the provider's login and consent
    forms as ``login``, up to the gateway's answer to the callback (not followed further):
    that answer, and the callback's URL."""
    return await browse(session, start, login, lambda url, _: "/auth/callback" in url)


async def approve_device(session: aiohttp.ClientSession, url: str, login: str) -> str:
    """Approve a device sign-in at the provider's verification URL as ``login``; the text of
    the provider's last page (its success page has no form)."""
    resp, _ = await browse(session, url, login, lambda _, body: "<form" not in body)
    return await resp.text()


async def browse(
    session: aiohttp.ClientSession, url: str, login: str, done: Callable[[str, str], bool]
) -> tuple[aiohttp.ClientResponse, str]:
    """Follow redirects and submit each page's form (signing in as ``login``) until ``done``
    (the URL, the page's text) says so: that answer and its URL."""
    method, form = "GET", None
    for _ in range(16):
        async with session.request(method, url, data=form, allow_redirects=False) as resp:
            body = await resp.text()
            if done(url, body) and resp.status not in (301, 302, 303):
                return resp, url
            if resp.status in (301, 302, 303) and "/auth/callback" not in url:
                url, method, form = urljoin(url, resp.headers["Location"]), "GET", None
                continue
            if done(url, body):
                return resp, url
            action, fields = _form(body)
            if 'name="login"' in body:
                fields.update(login=login, password="any")
            url, method, form = urljoin(url, action), "POST", fields
    raise AssertionError(f"the provider's pages did not end: {url}")


def _form(body: str) -> tuple[str, dict[str, str]]:
    found = _FORM.search(body)
    assert found is not None, f"no form on the provider's page: {body[:300]}"
    fields = {}
    for tag in _INPUT.findall(found.group(2)):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("value"):
            fields[attrs["name"]] = html.unescape(attrs["value"])
    return html.unescape(found.group(1)), fields
