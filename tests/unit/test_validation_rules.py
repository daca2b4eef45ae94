"""Input rules: env names, repo URLs, branches and checkout paths never reach git as options."""

from __future__ import annotations

import pytest

from contracts.validation import (
    check_branch,
    check_checkout_path,
    check_env_name,
    check_repo_url,
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
    ],
)
def test_repo_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="field `url`"):
        check_repo_url(url)


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
