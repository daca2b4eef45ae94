"""The webhooks' rules, each on its own: the retry schedule (5 s, 5 min, 30 min, 2 h, 5 h,
10 h ... for a day), what an answer means (2xx, 410, Retry-After, five days of failures), the
URL's syntax, and where a webhook may go (no loopback, link-local, private or platform
address: the name's addresses are checked and the checked one is the one connected to)."""

from __future__ import annotations

import ipaddress

import pytest

from contracts.gateway.webhooks import EVENT_TYPES, check_types, parse_url, wants
from controlplane.policy.webhook_rules import Address, Refused, Rules, check
from controlplane.settings import Settings, SettingsError
from services.webhooks.rules import judge, next_wait_s

S = Settings()
DAY_MS = 86_400_000


def schedule(settings: Settings) -> list[float]:
    """The times (seconds after the first) of every attempt of an event that always fails."""
    at, failed, times = 0.0, 0, [0.0]
    while (wait := next_wait_s(settings, failed, at)) is not None:
        at, failed = at + wait, failed + 1
        times.append(at)
    return times


def test_the_schedule_is_the_specifications_for_a_day() -> None:
    assert schedule(S) == [0, 5, 305, 2105, 9305, 27305, 63305, 86400]  # the day's end: the last


def test_the_schedules_steps_are_a_setting() -> None:
    fast = Settings(webhook_retry_steps_s="0.2,0.4", webhook_retry_budget_s=2.0)
    assert schedule(fast) == pytest.approx([0, 0.2, 0.6, 1.0, 1.4, 1.8, 2.0])
    for bad in ("", "5,x", "-1"):
        with pytest.raises(SettingsError, match="FLEET_WEBHOOK_RETRY_STEPS_S"):
            Settings(webhook_retry_steps_s=bad)


def verdict(status: int | None, *, failed: int = 0, first_ms: int = 1, now_ms: int = 1,
            since_ms: int | None = None, retry_after: float | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    return judge(S, status=status, retry_after_s=retry_after, failed_before=failed,
                 first_at_ms=first_ms, now_ms=now_ms, failing_since_ms=since_ms)  # fmt: skip


def test_a_2xx_is_delivered_and_anything_else_a_failure_retried() -> None:
    for status in (200, 201, 204, 299):
        assert verdict(status).outcome == "delivered"
    for status in (None, 301, 302, 400, 404, 429, 500, 503):
        v = verdict(status)
        assert (v.outcome, v.next_in_s, v.disable) == ("retrying", 5.0, ""), status


def test_410_gone_disables_the_endpoint_at_once() -> None:
    v = verdict(410)
    assert v.outcome == "failed"
    assert v.next_in_s is None
    assert "410" in v.disable


def test_a_retry_after_longer_than_the_schedule_is_waited_within_the_day() -> None:
    assert verdict(503, retry_after=60).next_in_s == 60
    assert verdict(503, retry_after=1).next_in_s == 5  # the schedule's is longer
    late = verdict(503, retry_after=7200, failed=6, first_ms=1, now_ms=DAY_MS - 60_000)
    assert late.next_in_s == pytest.approx(60, abs=0.01)  # never past the day


def test_the_last_attempt_of_the_day_gives_up_and_the_event_fails() -> None:
    v = verdict(500, failed=7, first_ms=1, now_ms=DAY_MS + 1)
    assert (v.outcome, v.next_in_s, v.disable) == ("failed", None, "")


def test_an_endpoint_failing_for_five_days_is_disabled_and_says_since_when() -> None:
    now = 6 * DAY_MS
    assert verdict(500, now_ms=now, first_ms=now, since_ms=now - 5 * DAY_MS + 1).disable == ""
    v = verdict(500, now_ms=now, first_ms=now, since_ms=now - 5 * DAY_MS)
    assert v.outcome == "failed"
    assert v.disable.startswith("every attempt failed since 1970-01-02")
    assert verdict(200, now_ms=now, since_ms=1).outcome == "delivered"  # a success ends it


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/x", "https://"), ("hooks.example.com/x", "https://"),
    ("https:///x", "names a host"), ("https://user:pw@hooks.example.com/", "no user"),
    ("https://hooks.example.com/x#frag", "fragment"), ("https://hooks.example.com:0/", "port"),
    ("https://hooks.example.com:99999/", "port"), ("https://hooks.example.com/a b", "spaces"),
    ("https://hooks.example.com/\r\nX: y", "control"),
])  # fmt: skip
def test_a_url_a_webhook_may_not_have(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_url(url)


def test_event_types_are_machine_kinds_or_a_lone_star() -> None:
    check_types(["*"])
    check_types(["machine.created", "machine.ready"])
    for bad, why in (
        (["created"], "no event type"),
        (["machine.nothing"], "no event type"),
        (["*", "machine.ready"], "alone"),
        (["machine.ready"] * 2, "once"),
    ):
        with pytest.raises(ValueError, match=why):
            check_types(bad)
    assert wants(["*"], "machine.lost")
    assert wants(["machine.lost"], "machine.lost")
    assert not wants(["machine.ready"], "machine.lost")
    assert "machine.daemon-status-reported" in EVENT_TYPES


PLATFORM = Rules(frozenset({ipaddress.ip_address("203.0.114.7"), ipaddress.ip_address("8.8.4.4")}))


@pytest.mark.parametrize(("addr", "why"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "private"), ("fc00::1", "private"), ("0.0.0.0", "private"),
    ("224.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("8.8.4.4", "platform"), ("::ffff:8.8.4.4", "platform"),
])  # fmt: skip
def test_no_webhook_goes_to_a_private_or_platform_address(addr: str, why: str) -> None:
    refusal = PLATFORM.refusal(ipaddress.ip_address(addr))
    assert refusal is not None
    assert why in refusal


def test_a_public_address_is_allowed_and_allow_private_names_exceptions() -> None:
    assert PLATFORM.refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert PLATFORM.refusal(ipaddress.ip_address("2606:4700::1111")) is None
    nets = Settings(webhook_allow_private="127.0.0.1,10.0.0.0/8").webhook_allowances
    allowing = Rules(PLATFORM.platform, nets)
    assert allowing.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert allowing.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert allowing.refusal(ipaddress.ip_address("127.0.0.2")) is not None
    assert allowing.refusal(ipaddress.ip_address("192.168.0.1")) is not None
    for bad in ("localhost", "127.0.0.1:0", "127.0.0.1:http", "[::1]:70000"):
        with pytest.raises(SettingsError, match="FLEET_WEBHOOK_ALLOW_PRIVATE"):
            _ = Settings(webhook_allow_private=bad).webhook_allowances


@pytest.mark.parametrize(("addr", "carries"), [
    ("64:ff9b::a00:1", "10.0.0.1"),  # NAT64's well-known prefix
    ("64:ff9b::7f00:1", "127.0.0.1"),
    ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
    ("::a00:1", "10.0.0.1"),  # IPv4-compatible
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo's client
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", ""),  # Teredo of public ones: reserved as it is
    ("64:ff9b::808:404", "8.8.4.4"),  # the platform's own, through NAT64
])  # fmt: skip
def test_an_ipv6_address_carrying_a_refused_ipv4_one_is_refused(addr: str, carries: str) -> None:
    refusal = PLATFORM.refusal(ipaddress.ip_address(addr))
    assert refusal is not None
    assert f"carries {carries}" in refusal if carries else "reserved" in refusal
    assert PLATFORM.refusal(ipaddress.ip_address("64:ff9b::5db8:d70e")) is None  # a public one


def test_an_allowance_never_opens_the_platforms_services_and_may_name_its_port() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    platform = frozenset({loopback})
    wide = Rules(platform, Settings(webhook_allow_private="127.0.0.1/32").webhook_allowances,
                 frozenset({4222, 6379, 8080}))  # fmt: skip
    assert wide.refusal(loopback, 9000) is None
    for port in (4222, 6379, 8080):  # NATS, Redis, the gateway: not whatever is allowed
        assert "service of the platform" in (wide.refusal(loopback, port) or "")
    narrow = Rules(platform, Settings(webhook_allow_private="127.0.0.1:9000,[::1]:9000")
                   .webhook_allowances)  # fmt: skip
    assert narrow.refusal(loopback, 9000) is None
    assert narrow.refusal(ipaddress.ip_address("::1"), 9000) is None
    assert narrow.refusal(loopback, 9001) is not None
    assert narrow.private(loopback, 9000)
    assert not narrow.private(ipaddress.ip_address("93.184.215.14"), 443)


def resolver(*answers: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[Address]:
        return [ipaddress.ip_address(a) for a in answers]

    return resolve


async def test_a_name_is_checked_by_its_addresses_and_the_checked_one_is_the_target() -> None:
    to = await check("https://hooks.example.com/in?x=1", PLATFORM,
                     resolver("10.0.0.1", "93.184.215.14"))  # fmt: skip
    assert (str(to.address), to.port, to.host, to.tls, to.path) == (
        "93.184.215.14", 443, "hooks.example.com", True, "/in?x=1")  # fmt: skip
    with pytest.raises(Refused, match="loopback"):  # a name pointing home (DNS rebinding)
        await check("http://rebind.example.com:8080/", PLATFORM, resolver("127.0.0.1"))
    with pytest.raises(Refused, match="link-local"):  # an address is checked as it is
        await check("http://169.254.169.254/latest/meta-data/", PLATFORM, resolver())
    with pytest.raises(Refused, match="fragment"):
        await check("https://hooks.example.com/#x", PLATFORM, resolver("93.184.215.14"))
