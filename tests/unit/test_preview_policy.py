"""What a program behind a preview may send a browser, header by header: never the platform's
cookies, never a cookie past its preview, never a redirect off it."""

from __future__ import annotations

import pytest

from contracts.errors import BadUpstream
from services.gateway.previews.policy import (
    MAX_COOKIES_TRIED,
    View,
    answer_headers,
    forwarded_cookie,
    location,
    preview_cookies,
    remove_dot_segments,
    set_cookie,
)

MID = "m-0123456789abcdef"
PREFIX = f"/machines/{MID}/ports/3000/"
BY_PATH = View(PREFIX, 3000, "127.0.0.1:8081", PREFIX + "app/page")
OWN = View("/", 3000, f"{MID}-3000.localhost:8081", "/app/page")


@pytest.mark.parametrize("line", [
    "fleet_preview=x; Path=/machines/", "fleet_preview=x; Path=/", "FLEET_PREVIEW=x",
    "fleet_session=x; HttpOnly", "__Host-fleet_session=x; Secure; Path=/",
    "__secure-fleet_preview=x", "=fleet_preview=x; Path=/", "fleet_preview",
    " fleet_csrf =x",
])  # fmt: skip
def test_the_platforms_cookies_are_never_set_by_a_program(line: str) -> None:
    assert set_cookie(line, PREFIX) is None
    assert set_cookie(line, "/") is None


def test_a_programs_cookie_stays_on_its_preview() -> None:
    assert set_cookie("a=1; Path=/; Domain=localhost; HttpOnly", PREFIX) == (
        f"a=1; Path={PREFIX}; HttpOnly"
    )
    assert set_cookie("a=1; path=/x; domain=.example.com", PREFIX) == (f"a=1; Path={PREFIX}x")
    assert set_cookie("a=1; Path=/; Domain=localhost", "/") == "a=1; Path=/"
    assert set_cookie("a=1; SameSite=Lax", PREFIX) == "a=1; SameSite=Lax"  # default path
    assert set_cookie("fleetish=1", "/") == "fleetish=1"


def test_answer_headers_keep_the_programs_own_and_drop_what_reaches_past_its_preview() -> None:
    raw = [(b"content-type", b"text/html"), (b"set-cookie", b"fleet_preview=x; Path=/"),
           (b"set-cookie", b"a=1; Path=/"), (b"service-worker-allowed", b"/"),
           (b"clear-site-data", b'"*"'), (b"location", b"/next")]  # fmt: skip
    assert answer_headers(raw, BY_PATH) == [
        (b"content-type", b"text/html"), (b"set-cookie", f"a=1; Path={PREFIX}".encode()),
        (b"location", f"{PREFIX}next".encode())]  # fmt: skip
    on_own = answer_headers(raw, OWN)
    assert (b"service-worker-allowed", b"/") in on_own  # its origin is its own
    assert (b"location", b"/next") in on_own
    assert all(not v.startswith(b"fleet_") for k, v in on_own if k == b"set-cookie")


@pytest.mark.parametrize(("target", "by_path", "own"), [
    ("/x?a=1#f", f"{PREFIX}x?a=1#f", "/x?a=1#f"),
    ("next", f"{PREFIX}app/next", "/app/next"),
    ("?page=2", f"{PREFIX}app/page?page=2", "/app/page?page=2"),
    ("../up", f"{PREFIX}up", "/up"),
    ("http://localhost:3000/login", f"{PREFIX}login", "/login"),
    ("http://127.0.0.1:3000", PREFIX, "/"),
])  # fmt: skip
def test_a_redirect_on_the_preview_is_kept_on_it(target: str, by_path: str, own: str) -> None:
    assert location(target, BY_PATH) == by_path
    assert location(target, OWN) == own


def test_a_refresh_is_a_redirect_too() -> None:
    assert answer_headers([(b"refresh", b"5; url=/x")], BY_PATH) == [
        (b"refresh", f"5; url={PREFIX}x".encode())]  # fmt: skip
    assert answer_headers([(b"refresh", b"5")], OWN) == [(b"refresh", b"5")]
    with pytest.raises(BadUpstream):
        answer_headers([(b"refresh", b"0;URL='http://evil.example/'")], OWN)


def test_a_redirect_to_the_previews_own_public_url_is_kept() -> None:
    assert location(f"http://{OWN.host}/x", OWN) == "/x"
    assert location(f"http://127.0.0.1:8081{PREFIX}x", BY_PATH) == f"{PREFIX}x"


@pytest.mark.parametrize("target", [
    "http://evil.example/", "https://evil.example/x", "//evil.example/x", "/\\evil.example/x",
    "\\\\evil.example", "javascript:alert(1)", "http://localhost:3001/", "data:text/html,x",
    f"http://{MID}-3001.localhost:8081/",
])  # fmt: skip
def test_a_redirect_anywhere_else_is_refused(target: str) -> None:
    for view in (BY_PATH, OWN):
        with pytest.raises(BadUpstream, match="off its preview"):
            location(target, view)


@pytest.mark.parametrize("target", [
    "/../../other", "/%2e%2e/%2E%2E/%2e%2e/x", "../../../../rpc", "/..\\..\\..\\x",
    f"http://127.0.0.1:8081/machines/{MID}/ports/3001/",
])  # fmt: skip
def test_a_redirect_never_climbs_out_of_a_shared_origins_prefix(target: str) -> None:
    with pytest.raises(BadUpstream):
        location(target, BY_PATH)


def test_dot_segments_resolve_as_a_browser_does() -> None:
    assert remove_dot_segments("/a/b/../c") == "/a/c"
    assert remove_dot_segments("/a/b/..") == "/a/"
    assert remove_dot_segments("/a/./b/.") == "/a/b/"
    assert remove_dot_segments("/a/%2E%2e/b") == "/b"
    assert remove_dot_segments("/../..") == "/"


def test_every_preview_cookie_of_a_request_is_tried_the_platforms_never_forwarded() -> None:
    sent = ["fleet_preview=planted; a=1; fleet_preview=ours", "fleet_preview=ours; b=2"]
    assert preview_cookies(sent) == ["planted", "ours"]
    assert preview_cookies(["a=1"]) == []
    many = "; ".join(f"fleet_preview=p{i}" for i in range(100))
    assert len(preview_cookies([many])) == MAX_COOKIES_TRIED
    cookie = b"fleet_preview=x; a=1; __Host-fleet_session=y; fleet_preview; b=2"
    assert forwarded_cookie(cookie) == b"a=1; b=2"
    assert forwarded_cookie(b"fleet_preview=x") == b""
