"""The sticky PR comment against a fake GitHub (a real local HTTP server): upsert, pagination,
who owns a marker, GitHub Enterprise Server, every error answer, the Actions environment and the
step summary."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from substratus.ci.comment import (
    MAX_BODY,
    STEP_SUMMARY_LIMIT,
    github_context,
    marker,
    repo_paths,
    upsert,
    write_step_summary,
)
from substratus.ci.github import GitHub, GitHubError
from tests.support.github_server import OTHER_PR, PR, REPO, TOKEN, FakeGitHub, User

MARK = "<!-- substratus:plan workspace=default dir=infra/ml -->"
OUTSIDER = User("mallory", "User", "CONTRIBUTOR", 666)


def run(fake: FakeGitHub, body: str, mark: str = MARK, number: int = PR) -> tuple[str, int]:
    result = upsert(fake.client(), REPO, number, body, mark)
    return result.action, result.id


# -- upsert ----------------------------------------------------------------------------------------


def test_first_run_creates_one_comment_with_the_marker_on_top(github_server: FakeGitHub) -> None:
    result = upsert(github_server.client(), REPO, PR, "Plan: 1 to add", MARK)

    (comment,) = github_server.comments_on(REPO, PR)
    assert (result.action, result.id, result.url) == ("created", comment["id"], comment["html_url"])
    assert comment["body"] == f"{MARK}\nPlan: 1 to add"
    seen = github_server.log[0].headers
    assert seen["Accept"] == "application/vnd.github+json"
    assert seen["X-GitHub-Api-Version"] == "2022-11-28"
    assert seen["auth-scheme"] == "Bearer" and seen["User-Agent"].startswith("substratus/")


def test_a_new_body_edits_the_same_comment_and_an_identical_one_is_left(
    github_server: FakeGitHub,
) -> None:
    _, first = run(github_server, "Plan: 1 to add")
    assert run(github_server, "Plan: 2 to add") == ("updated", first)
    (comment,) = github_server.comments_on(REPO, PR)
    assert comment["body"].endswith("Plan: 2 to add")
    assert comment["updated_at"] > comment["created_at"]

    writes = len(github_server.requests("PATCH")) + len(github_server.requests("POST"))
    assert run(github_server, "Plan: 2 to add") == ("unchanged", first)
    assert len(github_server.requests("PATCH")) + len(github_server.requests("POST")) == writes
    assert len(github_server.comments_on(REPO, PR)) == 1


def test_two_workspaces_and_two_directories_keep_separate_comments(
    github_server: FakeGitHub, tmp_path: Path
) -> None:
    env = {"GITHUB_WORKSPACE": str(tmp_path)}
    marks = [
        marker("default", tmp_path / "infra", environ=env),
        marker("staging", tmp_path / "infra", environ=env),
        marker("default", tmp_path / "infra/ml", environ=env),
    ]
    ids = [run(github_server, "v1", m)[1] for m in marks]
    assert [run(github_server, f"v2 {m}", m) for m in marks] == [("updated", i) for i in ids]
    assert len(set(ids)) == 3 and len(github_server.comments_on(REPO, PR)) == 3
    assert run(github_server, "v1", MARK, OTHER_PR)[0] == "created"  # another PR: its own


def test_our_comment_on_page_3_of_250_is_found(github_server: FakeGitHub) -> None:
    for i in range(250):
        body = f"{MARK}\nold plan" if i == 230 else f"review comment {i}"
        github_server.add_comment(REPO, PR, body, OUTSIDER if i != 230 else User("x", "Bot"))
    ours = github_server.comments_on(REPO, PR)[230]["id"]

    assert run(github_server, "new plan") == ("updated", ours)
    pages = [r.path for r in github_server.requests("GET")]
    assert len(pages) == 3 and "per_page=100" in pages[0] and pages[2].endswith("page=3")


def test_the_link_header_is_absolute_with_next_and_last(github_server: FakeGitHub) -> None:
    for i in range(250):
        github_server.add_comment(REPO, PR, f"c{i}")
    url = f"{github_server.url}/repos/{REPO}/issues/{PR}/comments?per_page=100&page=2"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as resp:
        link, items = resp.headers["Link"], json.load(resp)
    base = f"{github_server.url}/repos/{REPO}/issues/{PR}/comments?per_page=100"
    assert len(items) == 100 and items[0]["body"] == "c100"
    assert link == (
        f'<{base}&page=1>; rel="prev", <{base}&page=1>; rel="first", '
        f'<{base}&page=3>; rel="next", <{base}&page=3>; rel="last"'
    )


def test_a_comment_quoting_our_marker_is_not_taken_over(github_server: FakeGitHub) -> None:
    quoted = github_server.add_comment(REPO, PR, f"Look at this:\n> {MARK}\nhm", OUTSIDER)
    planted = github_server.add_comment(REPO, PR, f"{MARK}\nfake plan", OUTSIDER)

    action, ours = run(github_server, "real plan")
    assert action == "created" and ours not in (quoted["id"], planted["id"])
    assert github_server.comments[planted["id"]]["body"] == f"{MARK}\nfake plan"
    mine = upsert(github_server.client(), REPO, PR, "pinned", MARK, author="mallory")
    assert (mine.action, mine.id) == ("updated", planted["id"])  # only when asked to


def test_a_collaborators_copy_counts_and_the_newest_of_several_is_edited(
    github_server: FakeGitHub,
) -> None:
    collaborator = User("alice", "User", "COLLABORATOR", 5)
    older = github_server.add_comment(REPO, PR, f"{MARK}\nplan A")
    newer = github_server.add_comment(REPO, PR, f"{MARK}\nplan B", collaborator)

    assert run(github_server, "plan C") == ("updated", newer["id"])
    assert github_server.comments[older["id"]]["body"] == f"{MARK}\nplan A"


def test_a_post_that_landed_despite_a_502_is_not_posted_again(github_server: FakeGitHub) -> None:
    github_server.fail(502, method="POST", landed=True)
    assert run(github_server, "plan")[0] == "created"
    assert len(github_server.comments_on(REPO, PR)) == 1 and github_server.sleeps == [1.0]

    github_server.fail(503, method="POST")  # did not land: posted again, once
    assert run(github_server, "plan", MARK, OTHER_PR)[0] == "created"
    assert len(github_server.comments_on(REPO, OTHER_PR)) == 1


def test_github_enterprise_server_under_api_v3(tmp_path: Path) -> None:
    with FakeGitHub(prefix="/api/v3") as ghes:
        ghes.add_repo(REPO, prs=(PR,))
        env = {"GITHUB_API_URL": ghes.url, "GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO}
        ctx = github_context(env, pr=PR)
        assert ctx.api_url.endswith("/api/v3")
        assert run(ghes, "plan")[0] == "created" and run(ghes, "plan 2")[0] == "updated"
        assert all(r.path.startswith("/api/v3/repos/") for r in ghes.log)


# -- error answers ---------------------------------------------------------------------------------


def refused(fake: FakeGitHub, token: str = TOKEN, body: str = "plan") -> GitHubError:
    with pytest.raises(GitHubError) as info:
        upsert(fake.client(token), REPO, PR, body, MARK)
    assert TOKEN not in str(info.value) and "ghp_wrong" not in str(info.value)
    assert TOKEN not in info.value.detail
    return info.value


def test_401_names_the_token_and_never_prints_it(github_server: FakeGitHub) -> None:
    err = refused(github_server, "ghp_wrong")
    assert err.status == 401 and "rejected the token (401 Bad credentials)" in err.message
    assert "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}" in err.detail
    assert "Requires authentication" in refused(github_server, "").message
    assert "***" in repr(github_server.client()) and TOKEN not in repr(github_server.client())


def test_403_without_write_permission_says_which_permission(github_server: FakeGitHub) -> None:
    github_server.add_repo(REPO, prs=(PR,), read_only=True)
    err = refused(github_server)
    assert err.message == (
        f"cannot comment on pull request #{PR} in {REPO}: "
        "permission denied (403 Resource not accessible by integration)"
    )
    assert "permissions: pull-requests: write" in err.detail


def test_404_for_an_unknown_repository_or_pull_request(github_server: FakeGitHub) -> None:
    github_server.repos.pop(REPO)
    err = refused(github_server)
    assert err.message.endswith("not found (404)") and "cannot see it" in err.detail
    github_server.add_repo(REPO, prs=(1,))
    assert f"pull request #{PR} in {REPO}: not found" in refused(github_server).message


def test_primary_rate_limit_gives_the_reset_time(github_server: FakeGitHub) -> None:
    github_server.primary_rate_limit(reset=1704070800)
    err = refused(github_server)
    assert "rate limit exceeded (403); it resets at 2024-01-01 01:00:00 UTC" in err.message
    github_server.primary_rate_limit(reset=1704074400, status=429)
    assert "exceeded (429); it resets at 2024-01-01 02:00:00 UTC" in refused(github_server).message
    assert github_server.sleeps == []


def test_secondary_rate_limit_is_waited_out_once_when_short(github_server: FakeGitHub) -> None:
    github_server.secondary_rate_limit(retry_after=30)
    assert run(github_server, "plan")[0] == "created" and github_server.sleeps == [30.0]

    github_server.sleeps.clear()
    github_server.secondary_rate_limit(retry_after=30, status=403, times=2)
    assert "secondary rate limit (403): retry after 30 seconds" in refused(github_server).message
    assert github_server.sleeps == [30.0]

    github_server.sleeps.clear()
    github_server.secondary_rate_limit(retry_after=120)
    assert "retry after 120 seconds" in refused(github_server).message
    assert github_server.sleeps == []


def test_422_shows_githubs_message(github_server: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as info:
        github_server.client().create_comment(REPO, PR, "x" * (MAX_BODY + 1))
    assert info.value.status == 422
    assert "(422 Validation Failed: Body is too long (maximum is 65536 characters))" in str(
        info.value
    )
    sent = len(github_server.log)
    too_long = refused(github_server, body="x" * MAX_BODY)  # with the marker: refused up front
    assert "at most 65,536" in too_long.message
    assert f"budget={MAX_BODY - len(MARK) - 1}" in too_long.detail
    assert len(github_server.log) == sent


def test_5xx_is_retried_with_backoff_then_reported(github_server: FakeGitHub) -> None:
    github_server.fail(502, times=2)
    assert run(github_server, "plan")[0] == "created" and github_server.sleeps == [1.0, 2.0]

    github_server.sleeps.clear()
    github_server.fail(500, method="GET", times=3)
    err = refused(github_server)
    assert err.transient and "answered 500 Server Error (tried 3 times)" in err.message
    assert github_server.sleeps == [1.0, 2.0]


def test_an_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    client = GitHub(f"http://127.0.0.1:{port}", TOKEN, 2.0, sleep=sleeps.append, proxies={})
    with pytest.raises(GitHubError) as info:
        list(client.issue_comments(REPO, PR))
    assert "cannot reach GitHub at http://127.0.0.1" in info.value.message
    assert "(tried 3 times)" in info.value.message and sleeps == [1.0, 2.0]


# -- the Actions environment -----------------------------------------------------------------------


def event_env(tmp_path: Path, event: dict[str, object], **more: str) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return {
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        **more,
    }


def test_context_from_pull_request_and_issue_comment_events(tmp_path: Path) -> None:
    pull = event_env(
        tmp_path, {"action": "synchronize", "number": 99, "pull_request": {"number": 12}}
    )
    assert github_context(pull) == ("https://api.github.com", TOKEN, REPO, 12)
    comment = event_env(tmp_path, {"issue": {"number": 13, "pull_request": {"url": "u"}}})
    assert github_context(comment).pr == 13
    assert github_context(event_env(tmp_path, {"number": 14})).pr == 14
    assert github_context(comment, pr=5, repo="o/r")[2:] == ("o/r", 5)  # explicit wins
    gh_token = {**comment, "GITHUB_TOKEN": "", "GH_TOKEN": "other"}
    assert github_context(gh_token).token == "other"
    assert TOKEN not in repr(github_context(comment))


def test_each_missing_piece_is_named_with_how_to_give_it(tmp_path: Path) -> None:
    with pytest.raises(GitHubError) as info:
        github_context({"GITHUB_EVENT_NAME": "push"})
    summaries = [d.summary for d in info.value.diagnostics]
    details = " ".join(d.detail for d in info.value.diagnostics)
    assert summaries == [
        "no GitHub token",
        "no repository",
        "no pull request number (this run's event is `push`)",
    ]
    assert "env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}" in details
    assert "--repo OWNER/NAME" in details and "Pass --pr N" in details

    issue = event_env(tmp_path, {"issue": {"number": 3}})
    with pytest.raises(GitHubError, match="issue #3, which is not a pull request"):
        github_context(issue)
    with pytest.raises(GitHubError, match="is not JSON"):
        (tmp_path / "event.json").write_text("{", encoding="utf-8")
        github_context(issue)
    with pytest.raises(GitHubError, match="invalid repository 'nope'"):
        github_context({"GITHUB_TOKEN": "t"}, pr=1, repo="nope")


# -- the marker and the step summary ---------------------------------------------------------------


def test_marker_is_relative_to_the_repository_root(tmp_path: Path) -> None:
    env = {"GITHUB_WORKSPACE": str(tmp_path)}
    assert marker("default", f"{tmp_path}/infra/ml/", environ=env) == MARK
    assert marker("default", tmp_path, environ=env).endswith("dir=. -->")
    assert marker("default", "../elsewhere//x/", environ=env).endswith("dir=../elsewhere/x -->")
    assert marker("a b", tmp_path / "x -->", environ=env) == (
        "<!-- substratus:plan workspace=a%20b dir=x%20--%3E -->"
    )
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "infra/ml").mkdir(parents=True)
    assert marker("default", tmp_path / "infra/ml", environ={}) == MARK


def test_paths_under_the_repository_root_are_posted_relative_to_it() -> None:
    env = {"GITHUB_WORKSPACE": "/home/runner/work/my_repo/my_repo"}
    text = (
        "on /home/runner/work/my_repo/my_repo/ml/x.yaml:2; `/home/runner/work/my_repo/my_repo/a` "
        "and /home/runner/work/my\\_repo/my\\_repo/b (escaped); "
        "in /home/runner/work/my_repo/my_repo. Not /home/runner/work/my_repo/my_repo2/c, "
        "/x/home/runner/work/my_repo/my_repo/d."
    )
    assert repo_paths(text, env) == (
        "on ml/x.yaml:2; `a` and b (escaped); in .. Not /home/runner/work/my_repo/my_repo2/c, "
        "/x/home/runner/work/my_repo/my_repo/d."
    )
    assert repo_paths(text, {"GITHUB_WORKSPACE": "relative"}) == text


def test_step_summary_appends_and_is_cut_to_1_mib(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    assert write_step_summary({}, "x") is False
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert write_step_summary(env, "# one") and write_step_summary(env, "# two\n")
    assert summary.read_text(encoding="utf-8") == "# one\n# two\n"

    head = "<details><summary>d</summary>\n\n```diff\n"
    big = head + "+ line é\n" * 200_000  # 2,000,039 bytes
    cuts = []
    for _ in range(2):  # the same cut each time
        summary.write_text("# head\n", encoding="utf-8")
        assert write_step_summary(env, big)
        cuts.append(summary.read_text(encoding="utf-8"))
    text = cuts[0]
    assert cuts[0] == cuts[1] and len(text.encode("utf-8")) <= STEP_SUMMARY_LIMIT
    assert len(text.encode("utf-8")) > STEP_SUMMARY_LIMIT - 200  # the room is used
    kept, notice = text.split("```\n</details>\n")  # the fence and <details> closed
    assert kept.startswith("# head\n" + head) and kept.endswith("+ line é\n")
    assert notice.startswith("\n> [!WARNING]\n> The plan is cut here: it is 2,000,039 bytes")
