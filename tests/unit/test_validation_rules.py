"""Input rules: env names, repo URLs, branches and checkout paths never reach git as options."""

from __future__ import annotations

import pytest

from contracts.validation import (
    check_branch,
    check_checkout_path,
    check_env_name,
    check_repo_url,
    local_repo_path,
)


# --- env names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["A", "_", "a", "_private", "PATH", "A1_B2", "x" * 300])
def test_env_name_accepts(name: str) -> None:
    check_env_name(name)


@pytest.mark.parametrize(
    "name", ["", "1A", "A-B", "A B", "A=B", "A.B", "$A", " A", "A\tB", "\u00c4", "A\x00"]
)
def test_env_name_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="field `name`"):
        check_env_name(name)


def test_env_name_error_names_the_given_field() -> None:
    with pytest.raises(ValueError, match="field `env`"):
        check_env_name("1X", field="env")


# --- repo URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/repo.git",
        "http://git.internal/org/repo",
        "ssh://git@github.com/org/repo.git",
        "ssh://git@host:2222/org/repo.git",
        "git://git.kernel.org/pub/scm/git/git.git",
        "file:///srv/git/repo.git",
        "git@github.com:org/repo.git",
        "deploy-bot@git.example.com:team/app",
        "/srv/git/repo.git",
        "/tmp/repo",
        "https://host/path::with-colons",
    ],
)
def test_repo_url_accepts(url: str) -> None:
    check_repo_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "--upload-pack=touch /tmp/x",
        "--upload-pack=touch%20/tmp/x",
        "-x",
        "-",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "ext::sh%20-c%20touch%20/tmp/pwned",
        "fd::3",
        "https://github.com/org/repo name",
        "https://github.com/org/repo\n--upload-pack=x",
        "https://github.com/org/repo\r",
        "https://github.com/org/\trepo",
        " https://github.com/org/repo",
        "https://github.com/org/repo\x00",
        "relative/path",
        "./repo",
        "github.com/org/repo",
        "ftp://host/repo",
        "HTTPS//host/repo",
        "@host:path",
        "user@host:",
        # Issue 13: judged on what git sees, decoded.
        "ssh://-oProxyCommand=touch%20x/repo",
        "ssh://%2DoProxyCommand=touch%20x/repo",
        "ssh://%2doProxyCommand=x@host/repo",
        "git://%2d%2dupload-pack=x/repo",
        "git@host:-oProxyCommand=touch x",
        "git@host:--upload-pack=x",
        "https://host/repo%0a--upload-pack=x",
        "https://host/%00",
        "file://otherhost/srv/repo",
        "https://host:notaport/x",
    ],
)
def test_repo_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="field `url`"):
        check_repo_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://ghp_secret@github.com/org/repo.git",
        "https://user:pass@host/repo",
        "https://user%3Apass@host/repo",
        "http://x-access-token:t@host/repo",
        "HTTPS://token@host/repo",
        "ssh://git:password@host/repo",
    ],
)
def test_repo_url_refuses_credentials_and_points_to_the_token(url: str) -> None:
    with pytest.raises(ValueError, match=r"field `url` must not carry credentials.*--git-token"):
        check_repo_url(url)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/srv/git/repo", "/srv/git/repo"),
        ("/srv/git/../fleet-data", "/srv/fleet-data"),
        ("file:///srv/git/repo.git", "/srv/git/repo.git"),
        ("file:///srv/%2e%2e/fleet-data/x", "/fleet-data/x"),  # decoded, then normalized
        ("FILE://localhost/srv/a%20b", "/srv/a b"),
        ("https://host/srv/repo", None),
        ("git@host:/srv/repo", None),
    ],
)
def test_local_repo_path_is_what_git_reads(url: str, path: str | None) -> None:
    assert local_repo_path(url) == path


def test_repo_url_error_names_the_given_field() -> None:
    with pytest.raises(ValueError, match="field `source`"):
        check_repo_url("-x", field="source")


# --- branches -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "branch",
    ["main", "feature/x", "release-1.2", "fix_bug", "user/topic/sub", "v1.0.0", "a@b", "x" * 255],
)
def test_branch_accepts(branch: str) -> None:
    check_branch(branch)


@pytest.mark.parametrize(
    "branch",
    [
        "",
        "-x",
        "--foo",
        "--upload-pack=touch /tmp/x",
        "a..b",
        "..",
        "a b",
        "a\tb",
        "a\nb",
        "a~1",
        "a^",
        "a^{}",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "x.lock",
        "x.lock/y",
        "/x",
        "x/",
        "a//b",
        "a/.hidden",
        ".hidden",
        "a.",
        "a@{1}",
        "@{",
        "a\x7f",
        "a\x00",
        "x" * 256,
    ],
)
def test_branch_refuses(branch: str) -> None:
    with pytest.raises(ValueError, match="field `branch`"):
        check_branch(branch)


def test_branch_error_names_the_given_field() -> None:
    with pytest.raises(ValueError, match="field `ref`"):
        check_branch("a..b", field="ref")


# --- checkout paths -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["src/app", "app", "a/b/c", "app/", "my.repo", "code/.config-tools", ".dotfiles"]
)
def test_checkout_path_accepts(path: str) -> None:
    check_checkout_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "",
        ".",
        "./",
        "..",
        "../x",
        "a/../../b",
        "a/..",
        "/abs",
        "/",
        "~/x",
        "~",
        "-x",
        "--upload-pack=x",
        "a//b",
        "./a",
        "a/./b",
        "a/.",
        "a\\b",
        "..\\x",
        "a\x00b",
        ".fleet",
        ".fleet/x",
        ".fleet/",
        ".git",
        ".git/hooks",
        "app/.git",
        "app/.git/config",
        "app/.GIT/hooks",
    ],
)
def test_checkout_path_refuses(path: str) -> None:
    with pytest.raises(ValueError, match="field `path`"):
        check_checkout_path(path)


def test_checkout_path_reserved_dir_message_names_it() -> None:
    with pytest.raises(ValueError, match=r"\.fleet/ is reserved"):
        check_checkout_path(".fleet/env")


def test_checkout_path_error_names_the_given_field() -> None:
    with pytest.raises(ValueError, match="field `dest`"):
        check_checkout_path("../x", field="dest")
