"""The E2B front's rules, pure: which sandbox and port a request is for (its host name, else
the SDKs' headers), a signed URL's signature as E2B's SDKs make it, E2B's network settings as
an egress policy, paths between E2B's home and the machine's, an entry as envd describes it,
a list's query, Connect's envelopes, fleetd's errors as E2B's codes, and a watch's events as
envd's."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import make_mocked_request

from contracts.daemon.files import DirEntry, upload_name
from contracts.daemon.watch import FileEvent
from contracts.e2b import control as api, envd
from contracts.e2b.envd import ListDirRequest
from contracts.errors import (
    FileNotFound,
    Forbidden,
    InvalidParams,
    NotFound,
    NotSupported,
    RateLimited,
    Unauthorized,
)
from controlplane.store import E2bSandbox
from services.gateway.e2b import connect
from services.gateway.e2b.envd_files import e2b_paths, entry_info, to_e2b, to_machine
from services.gateway.e2b.envd_http import sign
from services.gateway.e2b.envd_process import KEEPALIVE_HEADER, Asked, end_event, session_params
from services.gateway.e2b.envd_watch import Uploads
from services.gateway.e2b.errors import CONNECT_STATUS, connect_code
from services.gateway.e2b.listing import Query, matches
from services.gateway.e2b.network import egress_of
from services.gateway.e2b.sandbox import Target, host_pattern, target_of

HOSTS = host_pattern("sbx.example.com")


def req(host: str, **headers: str):  # type: ignore[no-untyped-def]
    return make_mocked_request("GET", "/files", headers={"Host": host, **headers})


def test_a_request_is_a_sandboxs_by_its_host_name_else_by_the_sdks_headers() -> None:
    assert target_of(req("49983-m-0123456789abcdef.sbx.example.com"), HOSTS) == Target(
        "m-0123456789abcdef", 49983)  # fmt: skip
    assert target_of(req("8001-m-0123456789abcdef.SBX.example.com"), HOSTS) == Target(
        "m-0123456789abcdef", 8001)  # fmt: skip
    by_headers = req("api.sbx.example.com", **{api.SANDBOX_ID_HEADER: "m-1",
                                               api.SANDBOX_PORT_HEADER: "49999"})  # fmt: skip
    assert target_of(by_headers, HOSTS) == Target("m-1", 49999)
    assert target_of(req("api.sbx.example.com", **{api.SANDBOX_ID_HEADER: "m-1"}),
                     HOSTS) == Target("m-1", api.ENVD_PORT)  # fmt: skip
    assert target_of(req("api.sbx.example.com"), HOSTS) is None  # the control API
    assert target_of(req("8001-m-1.sbx.example.com.evil.test"), HOSTS) is None
    for port in ("0", "70000", "x"):
        with pytest.raises(InvalidParams, match="port"):
            target_of(req("h", **{api.SANDBOX_ID_HEADER: "m-1",
                                  api.SANDBOX_PORT_HEADER: port}), HOSTS)  # fmt: skip


def test_a_signature_is_e2bs() -> None:
    """The one E2B's research capture recorded: token ``tok-abc``, no user, no expiration."""
    assert sign(["/home/user/x", "read", "", "tok-abc"], None) == (
        "v1_5J9S+nHEkDSmQlAX/GO0N7PUV7ZE6aZMI84csO03pWc")  # fmt: skip
    assert sign(["x", "read", "", "t"], "100") != sign(["x", "read", "", "t"], None)


def test_network_settings_become_an_egress_policy() -> None:
    assert egress_of(None, None) is None
    closed = egress_of(None, False)
    assert closed is not None
    assert (closed.default, closed.allow, closed.deny) == ("deny", [], [])
    listed = egress_of(api.Network(allow_out=["1.1.1.1"], deny_out=["0.0.0.0/0", "10.0.0.0/8"]),
                       None)  # fmt: skip
    assert listed is not None
    assert (listed.default, listed.allow, listed.deny) == ("deny", ["1.1.1.1"], ["10.0.0.0/8"])
    open_ = egress_of(api.Network(deny_out=["example.com"]), True)
    assert open_ is not None
    assert (open_.default, open_.deny) == ("allow", ["example.com"])
    with pytest.raises(NotSupported, match=r"network\.egressProxy"):
        egress_of(api.Network(egress_proxy={"address": "p:1"}), None)


def test_e2bs_home_is_the_machines_both_ways() -> None:
    home = "/srv/machines/m-1/home"
    for e2b, machine in (
        ("/home/user", "~"),
        ("", "~"),
        ("/home/user/a/b", "~/a/b"),
        ("a/b", "a/b"),
        ("/tmp/x", "/tmp/x"),
        ("/home/userx", "/home/userx"),
    ):
        assert to_machine(e2b) == machine
    assert to_e2b(home, home) == "/home/user"
    assert to_e2b(home + "/a/b", home) == "/home/user/a/b"
    assert to_e2b(home + "x", home) == home + "x"  # a sibling, not inside


def test_an_entry_is_what_envd_says_of_it() -> None:
    """A deep listing's entry (named by its path from the listed directory) is named by its
    last part; a daemon's owner, group and permissions pass as they are, and an older
    daemon's entry, without them, has its permissions worked out from its kind and mode."""
    home = "/srv/m/home"
    new = DirEntry(name="src/lib", kind="dir", size=4096, mode=0o750, mtime=0.0, owner="user",
                   group="1234", permissions="drwxr-x---")  # fmt: skip
    info = entry_info(new, home + "/src/lib", home)
    assert (info.name, info.path, info.type) == ("lib", "/home/user/src/lib",
                                                 "FILE_TYPE_DIRECTORY")  # fmt: skip
    assert (info.owner, info.group, info.permissions) == ("user", "1234", "drwxr-x---")
    old = DirEntry(name="l", kind="symlink", size=1, mode=0o777, mtime=0.0, target="x")
    info = entry_info(old, home + "/l", home)
    assert (info.owner, info.permissions, info.symlink_target) == ("", "lrwxrwxrwx", "x")


def test_a_lists_query_is_read_and_refused_by_name() -> None:
    q = Query({"metadata": "k=v%20w&a=b", "state": "paused", "limit": "5", "order": "asc"})
    assert (q.metadata, q.states, q.limit, q.descending) == ({"k": "v w", "a": "b"},
                                                             {"paused"}, 5, False)  # fmt: skip
    assert Query({}).states == {"running", "paused"}
    for bad, field in (({"state": "dead"}, "state"), ({"limit": "-1"}, "limit"),
                       ({"nextToken": "%%%"}, "nextToken"), ({"startedAfter": "x"},
                                                              "startedAfter")):  # fmt: skip
        with pytest.raises(InvalidParams) as refused:
            Query(bad)
        assert refused.value.data == {"field": field}


def test_an_envelope_is_its_flags_length_and_message() -> None:
    assert connect.envelope(b"{}") == b"\x00\x00\x00\x00\x02{}"
    assert connect.envelope(b"{}", 2)[0] == 2
    assert connect.decode(b'{"depth": "3", "unknown": 1}', ListDirRequest).depth == 3
    with pytest.raises(InvalidParams, match="not JSON"):
        connect.decode(b"{", ListDirRequest)


def test_fleetds_errors_are_e2bs_codes() -> None:
    for exc, code in ((NotFound("x"), "not_found"), (FileNotFound("x"), "not_found"),
                      (Unauthorized("x"), "unauthenticated"), (Forbidden("x"),
                                                               "permission_denied"),
                      (RateLimited("x"), "resource_exhausted"), (InvalidParams("x"),
                                                                 "invalid_argument"),
                      (NotSupported("x"), "unimplemented")):  # fmt: skip
        assert connect_code(exc) == code
        assert CONNECT_STATUS[code] == exc.http_status or code == "resource_exhausted"
    # The one the front raises itself (a MakeDir where a directory is): Connect's status for it.
    assert CONNECT_STATUS["already_exists"] == 409


def test_a_watch_says_of_an_upload_what_envds_would() -> None:
    """fleetd writes an upload beside its file and renames it over it; envd writes in place."""
    uploads = Uploads()
    temp = "/h/" + upload_name("a.txt")
    seen = [uploads.seen(FileEvent(type=t, path=p)) for t, p in (
        ("create", temp), ("write", temp), ("chmod", temp), ("rename", temp),
        ("create", "/h/a.txt"), ("write", "/h/a.txt"), ("overflow", "/h"),
        ("rename", "/h/" + upload_name("a.txt")), ("write", "/h/a.txt"))]  # fmt: skip
    assert seen == [[], [], [], [], ["create", "write"], ["write"], [], [], ["write"]]


def test_a_commands_start_is_a_session_on_pipes_or_a_terminal_as_asked() -> None:
    basic = base64.b64encode(b"root:").decode()
    asked = Asked.of(make_mocked_request("POST", "/process.Process/Start", headers={
        "Connect-Timeout-Ms": "60000", KEEPALIVE_HEADER: "30",
        "Authorization": f"Basic {basic}"}))  # fmt: skip
    assert asked == Asked(deadline_s=60.0, keepalive_s=30.0, user="root")
    command = envd.ProcessConfig(cmd="/bin/bash", args=["-l", "-c", "id -u"],
                                 cwd="/home/user/sub", envs={"A": "1"})  # fmt: skip
    p = session_params("m-1", envd.StartRequest(process=command, stdin=False), asked)
    assert p.command == ["sudo", "-n", "-E", "--", "/bin/bash", "-l", "-c", "id -u"]
    assert (p.pty, p.stdin, p.timeout_s, p.cwd, p.env) == (False, False, 60.0, "~/sub", {"A": "1"})
    term = envd.StartRequest(process=command, pty=envd.Pty(size=envd.PtySize(cols=0, rows=0)))
    p = session_params("m-1", term, Asked())
    assert (p.command[0], p.pty, p.stdin, p.cols, p.rows, p.timeout_s) == (
        "/bin/bash", True, True, 80, 24, None)  # fmt: skip
    for bad in (envd.ProcessConfig(), envd.ProcessConfig(cmd="sh", envs={"1A": "x"})):
        with pytest.raises(InvalidParams):
            session_params("m-1", envd.StartRequest(process=bad), Asked())
    assert Asked.of(make_mocked_request("POST", "/", headers={
        "Authorization": "Basic !!!", KEEPALIVE_HEADER: "-1"})) == Asked()  # fmt: skip


def test_a_commands_end_says_its_exit_or_its_signal_as_envd_does() -> None:
    assert end_event(0).event.end == envd.EndEvent(exit_code=0, exited=True,
                                                   status="exit status 0")  # fmt: skip
    killed = end_event(137).event.end
    assert killed is not None
    assert (killed.exit_code, killed.exited, killed.status) == (-1, False, "signal: killed")
    assert end_event(200).event.end == envd.EndEvent(exit_code=200, exited=True,
                                                     status="exit status 200")  # fmt: skip
    lost = end_event(None).event.end
    assert lost is not None
    assert lost.error == "lost"


def test_a_sandbox_started_at_the_time_asked_for_is_listed_as_started_after_it() -> None:
    started = 1_795_000_000.1234567  # more digits than a start time is shown with
    record = E2bSandbox(id="m-1", instance_id="i-1", template_id="base", made_by="t",
                        started_at=started, end_at=started + 300)  # fmt: skip
    shown = datetime.fromtimestamp(started, UTC)  # what get_info answers, to the microsecond
    assert matches(record, Query({"startedAfter": shown.isoformat()}))
    later = (shown + timedelta(microseconds=1)).isoformat()
    assert not matches(record, Query({"startedAfter": later}))


def test_an_api_key_is_a_fleetd_token_as_it_is_or_in_e2bs_form() -> None:
    token = "RAl6cXfCg4Mowb6nk_tkNwkJqocQ86wIkM6JY0c_8BE"  # base64url, as fleetd makes them
    key = api.api_key_of(token)
    assert re.fullmatch(r"e2b_[0-9a-f]+", key)  # what E2B's SDKs may check a key against
    assert api.token_of(key) == token
    assert api.token_of(token) == token
    assert api.token_of("e2b_zz") == "e2b_zz"  # not E2B's form after all: as it is (refused)


def test_an_error_names_the_home_as_e2b_does_never_where_it_is_on_its_host() -> None:
    home = "/srv/fleet/machines/m-1/home"
    with pytest.raises(FileNotFound) as missing, e2b_paths(home):
        raise FileNotFound(f"{home}/nope: no such file or directory")
    assert missing.value.message == "/home/user/nope: no such file or directory"
    assert str(missing.value) == missing.value.message
