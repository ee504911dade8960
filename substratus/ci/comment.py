"""The sticky plan comment on a GitHub pull request (DESIGN §10): one per workspace and directory.

- ``marker(workspace, config_dir)`` is the hidden first line of the comment,
  ``<!-- substratus:plan workspace=default dir=infra/ml -->``: two stacks in one repository (other
  workspace or other directory) keep two comments. ``config_dir`` is made relative to the
  repository root (``$GITHUB_WORKSPACE``, else ``git rev-parse --show-toplevel``, else kept as
  given) and normalised: posix separators, no trailing slash, ``.`` for the root. Values are
  percent-encoded, so a marker never contains spaces or ``-->`` of its own.
- ``repo_paths(text, environ)``: every absolute path under the repository root in a comment or
  job summary made relative to it (the root itself ``.``): the runner's paths are never posted.
- ``upsert(client, repo, number, body, marker)`` puts the marker at the top of ``body`` and finds
  OUR earlier comment: one whose body STARTS with the marker (a reply that quotes it, or a text
  that merely mentions it, does not count) and whose author is trusted: a bot (``user.type`` Bot:
  ``github-actions[bot]`` for GITHUB_TOKEN, any GitHub App) or the repository's OWNER, MEMBER or
  COLLABORATOR (``author_association``), so an outsider cannot plant a comment that we would then
  fill with the plan (and whose hash they could later edit). ``author=LOGIN`` narrows it to that
  login instead. We do not ask GitHub who the token is: ``GET /user`` is refused to GITHUB_TOKEN.
  Found: PATCHed in place ("updated"), or left alone when the body is identical ("unchanged");
  not found: created ("created"). Several of ours (a race between two runs, a copy): the newest
  (``created_at``, then ``id``) is edited and the others are left as they are: deleting comments
  is riskier than a stale duplicate. A POST that fails transiently (5xx, timeout) may have
  landed: the comments are listed again before posting again, so a retry never duplicates.
  A body longer than 65,536 characters with the marker is refused before any request:
  render with ``budget=MAX_BODY - len(marker) - 1``.
- ``github_context(environ, pr, repo)`` reads the GitHub Actions environment (explicit ``pr`` and
  ``repo`` win) and names every missing piece with how to give it.
- ``run_info(environ)`` is where the plan was made: ``GITHUB_SHA`` (and the pull request's head
  from the event when it differs: ``GITHUB_SHA`` is then the test merge commit) and the run's
  address ``GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID`` (``/attempts/N``
  after the first attempt); what is missing or malformed is left out.
- ``summary_room(environ)`` is how many bytes of GitHub's 1 MiB per step are left in
  ``$GITHUB_STEP_SUMMARY`` (None when it is unset): render the job summary for that many.
  ``write_step_summary(environ, text, plan_file)`` appends it, cut deterministically (at a line,
  fences and ``<details>`` closed, a notice naming ``substratus show <plan_file>`` added) if it
  does not fit after all.

Only ``upsert`` talks to GitHub (through the client); ``marker`` may run ``git``;
``github_context`` and ``run_info`` read the event file; ``write_step_summary`` appends to one
file.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from substratus.ci.github import DEFAULT_API_URL, GitHub, GitHubError, repo_path
from substratus.engine.backoff import GaveUp, retry
from substratus.engine.markdown_parts import RunInfo
from substratus.engine.mdtext import code_span, escape_html, escape_md

MAX_BODY = 65536  # characters: GitHub's "Body is too long (maximum is 65536 characters)"
STEP_SUMMARY_LIMIT = 1024 * 1024  # bytes per step
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
NOTICE = (
    "\n> [!WARNING]\n> The plan is cut here: it is {size:,} bytes and GitHub shows at most 1 MiB "
    "per step summary. {show} prints all of it.\n"
)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "updated", "unchanged"]
    id: int
    url: str


# -- the marker -----------------------------------------------------------------------------------


def marker(
    workspace: str, config_dir: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> str:
    ws = urllib.parse.quote(workspace, safe="")
    where = urllib.parse.quote(repo_relative(config_dir, environ), safe="/@+,:")
    return f"<!-- substratus:plan workspace={ws} dir={where} -->"


def repo_relative(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> str:
    """``path`` relative to the repository root, normalised (see the module docstring)."""
    env = os.environ if environ is None else environ
    real = Path(os.path.realpath(Path(path).absolute()))
    root = env.get("GITHUB_WORKSPACE") or _git_toplevel(real)
    if root:
        try:
            return _normalise(real.relative_to(os.path.realpath(root)).as_posix())
        except ValueError:
            pass  # outside the repository: as given
    return _normalise(Path(path).as_posix())


def repo_paths(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` (a comment or job summary about to be posted) with every absolute path under the
    repository root made relative to it, so the runner's directories are never posted:
    ``/home/runner/work/r/r/ml/substratus.yaml`` becomes ``ml/substratus.yaml`` and the root
    itself ``.``. The root is ``$GITHUB_WORKSPACE``, else the git top level of the working
    directory (no root: ``text`` unchanged); it is found as given and as its real path, plain
    and as Markdown or HTML escapes it. Only shortens ``text``."""
    env = os.environ if environ is None else environ
    root = env.get("GITHUB_WORKSPACE") or _git_toplevel(Path.cwd())
    if not root or not os.path.isabs(root):
        return text
    forms = {root.rstrip("/"), os.path.realpath(root)}
    forms |= {escape_md(f) for f in forms} | {escape_html(f) for f in forms}
    for form in sorted((f for f in forms if len(f) > 1), key=len, reverse=True):
        text = re.sub(
            rf"(?<![\w./-]){re.escape(form)}(?:/|(?![\w-]|\.[\w.-]))",
            lambda m: "" if m.group(0).endswith("/") else ".",
            text,
        )
    return text


def _normalise(path: str) -> str:
    norm = posixpath.normpath(path) if path else "."
    return norm.rstrip("/") or "/"


def _git_toplevel(path: Path) -> str | None:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


# -- finding and writing the comment ---------------------------------------------------------------


def with_marker(body: str, mark: str) -> str:
    """``body`` with ``mark`` as its first line (unchanged when it already starts with it)."""
    return body if body.startswith(mark) else f"{mark}\n{body}"


def is_ours(comment: Mapping[str, Any], mark: str, author: str | None = None) -> bool:
    """The rule of the module docstring: starts with the marker, trusted (or ``author``'s)."""
    body = comment.get("body")
    if not isinstance(body, str) or not body.startswith(mark):
        return False
    user = comment.get("user")
    user = user if isinstance(user, dict) else {}
    if author is not None:
        return bool(user.get("login") == author)
    return user.get("type") == "Bot" or comment.get("author_association") in TRUSTED_ASSOCIATIONS


def find_comment(
    client: GitHub, repo: str, number: int, mark: str, author: str | None = None
) -> dict[str, Any] | None:
    """The newest of our comments on the pull request, or None (reads every page)."""
    newest: dict[str, Any] | None = None
    for comment in client.issue_comments(repo, number):
        if is_ours(comment, mark, author) and (newest is None or _age(comment) > _age(newest)):
            newest = comment
    return newest


def _age(comment: Mapping[str, Any]) -> tuple[str, int]:
    cid = comment.get("id")
    return str(comment.get("created_at") or ""), cid if isinstance(cid, int) else 0


def _result(action: Literal["created", "updated", "unchanged"], c: dict[str, Any]) -> CommentResult:
    return CommentResult(action, int(c["id"]), str(c.get("html_url", "")))


def upsert(
    client: GitHub, repo: str, number: int, body: str, mark: str, *, author: str | None = None
) -> CommentResult:
    """Create or edit our sticky comment (see the module docstring)."""
    full = with_marker(body, mark)
    if len(full) > MAX_BODY:
        raise GitHubError(
            f"the comment is {len(full):,} characters; GitHub allows at most {MAX_BODY:,}",
            f"Render the plan with budget={MAX_BODY - len(mark) - 1} (the marker takes the rest).",
        )
    failed_posts: list[GitHubError] = []  # a failed POST may have posted: look again first

    def once() -> CommentResult:
        found = find_comment(client, repo, number, mark, author)
        if found is not None:
            old = str(found.get("body") or "")
            if old == full or old.replace("\r\n", "\n") == full.replace("\r\n", "\n"):
                return _result("created" if failed_posts else "unchanged", found)
            return _result("updated", client.update_comment(repo, int(found["id"]), full))
        try:
            return _result(
                "created", client.create_comment(repo, number, full, retry_transient=False)
            )
        except GitHubError as err:
            failed_posts.append(err)
            raise

    def retryable(exc: BaseException) -> bool:  # only a transient failure of the POST itself
        return bool(failed_posts) and exc is failed_posts[-1] and failed_posts[-1].transient

    try:
        return retry(once, client.policy, retryable=retryable, sleep=client.sleep)
    except GaveUp as gave:
        raise gave.last from None


# -- the CI environment ---------------------------------------------------------------------------


class GitHubContext(NamedTuple):
    api_url: str
    token: str
    repo: str
    pr: int

    def __repr__(self) -> str:  # never print the token
        return f"GitHubContext({self.api_url!r}, token='***', repo={self.repo!r}, pr={self.pr})"


def github_context(
    environ: Mapping[str, str], pr: int | None = None, repo: str | None = None
) -> GitHubContext:
    """``(api_url, token, repo, pr)``; each missing piece is one diagnostic of a ``GitHubError``."""
    problems: list[tuple[str, str]] = []
    api_url = (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
        problems.append((f"GITHUB_API_URL {api_url!r} is not an http(s) URL", _API_HELP))
    token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN") or ""
    if not token:
        problems.append(("no GitHub token", _TOKEN_HELP))
    event = _event(environ, problems) if pr is None else None
    repo = repo or environ.get("GITHUB_REPOSITORY")
    if not repo:
        problems.append(("no repository", _REPO_HELP))
    else:
        try:
            repo_path(repo)
        except GitHubError as err:
            problems.append((err.message, err.detail))
    known = len(problems)
    number = pr if pr is not None else _event_number(event, environ, problems)
    if number is not None and number <= 0:
        problems.append((f"invalid pull request number {number}", "Pass --pr N with N ≥ 1."))
    elif number is None and len(problems) == known:
        kind = environ.get("GITHUB_EVENT_NAME")
        this = f" (this run's event is `{kind}`)" if kind else ""
        problems.append((f"no pull request number{this}", _PR_HELP))
    if problems:
        raise GitHubError.several(problems)
    assert repo is not None and number is not None
    return GitHubContext(api_url, token, repo, number)


_TOKEN_HELP = (
    "Set GITHUB_TOKEN (in GitHub Actions: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`, with "
    "`permissions: pull-requests: write`) or GH_TOKEN."
)
_REPO_HELP = "Pass --repo OWNER/NAME, or run in GitHub Actions (GITHUB_REPOSITORY)."
_PR_HELP = (
    "Pass --pr N, or run in a workflow triggered by `pull_request`, `pull_request_target` or "
    "`issue_comment` on a pull request."
)
_API_HELP = "Set GITHUB_API_URL to https://api.github.com or to https://HOST/api/v3 (GHES)."


def _event(environ: Mapping[str, str], problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            return doc
        problems.append((f"the GitHub event file {path} is not a JSON object", _EVENT_HELP))
    except OSError as err:
        problems.append((f"cannot read the GitHub event file {path}: {err.strerror}", _EVENT_HELP))
    except ValueError:
        problems.append((f"the GitHub event file {path} is not JSON", _EVENT_HELP))
    return None


_EVENT_HELP = "GITHUB_EVENT_PATH is set by GitHub Actions; unset it and pass --pr N and --repo."


def _event_number(
    event: dict[str, Any] | None, environ: Mapping[str, str], problems: list[tuple[str, str]]
) -> int | None:
    found: object = None
    if event:
        pull, issue = event.get("pull_request"), event.get("issue")
        if isinstance(pull, dict):
            found = pull.get("number")
        elif isinstance(issue, dict):
            if not issue.get("pull_request"):
                problems.append(
                    (
                        f"the issue_comment event is on issue #{issue.get('number')}, "
                        "which is not a pull request",
                        "Run the job only for pull requests "
                        "(`if: github.event.issue.pull_request`), or pass --pr N.",
                    )
                )
                return None
            found = issue.get("number")
        else:
            found = event.get("number")
    if found is None:  # pull_request events also say it in GITHUB_REF: refs/pull/N/merge
        ref = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", environ.get("GITHUB_REF", ""))
        found = int(ref.group(1)) if ref else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


# -- where the plan was made ---------------------------------------------------------------------

_SHA = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


def run_info(environ: Mapping[str, str]) -> RunInfo:
    """The commit and CI run of this job (see the module docstring)."""
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    repo = environ.get("GITHUB_REPOSITORY", "")
    repo = repo if _SLUG.match(repo) else ""
    sha = environ.get("GITHUB_SHA", "").lower()
    sha = sha if _SHA.match(sha) else ""
    run_id = environ.get("GITHUB_RUN_ID", "")
    run_id = run_id if run_id.isdigit() else ""
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "")
    run_url = f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else ""
    if run_url and attempt.isdigit() and int(attempt) > 1:
        run_url += f"/attempts/{attempt}"
    return RunInfo(
        sha=sha,
        commit_url=f"{server}/{repo}/commit/{sha}" if repo and sha else "",
        head_sha=_head_sha(environ),
        run_url=run_url,
        run_id=run_id,
    )


def _head_sha(environ: Mapping[str, str]) -> str:
    """The pull request's head commit in the event file ("" when unknown)."""
    path = environ.get("GITHUB_EVENT_PATH")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return ""
    pull = doc.get("pull_request") if isinstance(doc, dict) else None
    head = pull.get("head") if isinstance(pull, dict) else None
    sha = str(head.get("sha") or "").lower() if isinstance(head, dict) else ""
    return sha if _SHA.match(sha) else ""


# -- the step summary -----------------------------------------------------------------------------


def summary_room(environ: Mapping[str, str]) -> int | None:
    """The bytes left for this step's summary; None when ``$GITHUB_STEP_SUMMARY`` is unset."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    try:
        used = os.path.getsize(path)
    except OSError:
        used = 0
    return max(0, STEP_SUMMARY_LIMIT - used)


def write_step_summary(environ: Mapping[str, str], text: str, plan_file: str = "PLANFILE") -> bool:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY``; False when unset or the step's 1 MiB is used."""
    path = environ.get("GITHUB_STEP_SUMMARY")
    room = summary_room(environ)
    if not path or room is None:
        return False
    show = code_span(f"substratus show {shlex.quote(plan_file)}")
    data = fit_summary(text if text.endswith("\n") else text + "\n", room, show)
    if data is None:
        return False
    try:
        with open(path, "a", encoding="utf-8", newline="") as fh:
            fh.write(data)
    except OSError as err:
        raise GitHubError(f"cannot write the step summary {path}: {err.strerror}") from None
    return True


def fit_summary(text: str, budget: int, show: str = "`substratus show PLANFILE`") -> str | None:
    """``text`` when it fits in ``budget`` UTF-8 bytes, else its head cut at a line with open
    fences and ``<details>`` closed and ``NOTICE``; None when not even the notice fits."""
    raw = text.encode("utf-8")
    if len(raw) <= budget:
        return text
    notice = NOTICE.format(size=len(raw), show=show)
    room = budget - len(notice.encode("utf-8"))
    while room > 0:
        head = raw[:room].decode("utf-8", "ignore")
        head = head[: head.rfind("\n") + 1]
        out = head + _closers(head) + notice
        excess = len(out.encode("utf-8")) - budget
        if excess <= 0:
            return out
        room -= excess
    return None


def _closers(markdown: str) -> str:
    fence: str | None = None
    details = 0
    for line in markdown.splitlines():
        m = _FENCE.match(line)
        if m and (fence is None or (m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence))):
            fence = m.group(1) if fence is None else None
        elif fence is None:
            details += len(re.findall(r"<details\b", line)) - line.count("</details>")
    return (f"{fence}\n" if fence else "") + "</details>\n" * max(0, details)
