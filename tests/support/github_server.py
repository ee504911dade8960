"""A fake GitHub REST API for tests: a real HTTP server on 127.0.0.1, standard library only.

It answers, as github.com does, the calls of ``substratus.ci.github``:

- ``GET /repos/O/R/issues/N/comments`` (``per_page`` default 30, max 100; ``page``; a ``Link``
  header with absolute URLs: ``prev``/``first`` after page 1, ``next``/``last`` before the end),
  ``POST`` of the same (201), ``GET``/``PATCH /repos/O/R/issues/comments/ID`` (200).
- Comments carry ``id``, ``node_id``, ``url``, ``html_url``, ``issue_url``, ``body``,
  ``user {login, id, type}``, ``author_association``, ``created_at``, ``updated_at``; ids rise from
  1000001 and every write ticks a fake clock one second (deterministic order and times).
- 401 without a token ("Requires authentication") or with an unknown one ("Bad credentials"),
  404 for unknown repositories, pull requests, comments and paths, 403 ("Resource not accessible
  by integration") for writes to a repository added ``read_only``, 422 for a missing body or one
  over 65,536 characters (GitHub's "Body is too long (maximum is 65536 characters)").
- ``fail(status, headers=..., message=..., times=n, method=None, landed=False)`` answers the
  next n requests (of ``method``) so, before anything else (``landed``: after carrying the request
  out, like a 502 on a POST that did create the comment); ``primary_rate_limit(reset)`` and
  ``secondary_rate_limit(retry_after)`` program GitHub's rate-limit answers.
- ``FakeGitHub(prefix="/api/v3")`` serves under that path, as GitHub Enterprise Server does.
- ``log`` records every request in memory (method, path with query, status, the headers we check;
  never the token). ``client()`` is a ``substratus.ci.github.GitHub`` for this server, without
  proxies and with ``sleeps`` recording the waits instead of sleeping.

Fixture (import it into ``tests/conftest.py``): ``github_server``, function scope: a started
server with repository ``REPO`` (pull requests ``PR`` and ``OTHER_PR``) and token ``TOKEN`` for
``github-actions[bot]``; stopped after the test.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from substratus.ci.github import GitHub

TOKEN = "ghs_fakeActionsToken0123456789"
REPO, PR, OTHER_PR = "acme/ml", 7, 8
MAX_BODY = 65536
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_LIST = re.compile(r"^/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_ONE = re.compile(r"^/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")


@dataclass(frozen=True)
class User:
    login: str
    type: str = "User"  # "User" or "Bot"
    association: str = "NONE"  # author_association on this repository
    id: int = 1


BOT = User("github-actions[bot]", "Bot", "NONE", 41898282)


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    status: int
    headers: dict[str, str]  # Accept, X-GitHub-Api-Version, User-Agent, auth scheme


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    message: str
    method: str | None = None  # only requests with this method
    landed: bool = False  # the request is carried out, then answered with the fault


@dataclass
class _Repo:
    prs: set[int]
    read_only: bool = False


@dataclass(eq=False)
class FakeGitHub:
    prefix: str = ""
    users: dict[str, User] = field(default_factory=lambda: {TOKEN: BOT})
    repos: dict[str, _Repo] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.rstrip("/")
        self._where: dict[int, tuple[str, int]] = {}  # comment id -> (repo, number)
        self._ids, self._ticks = itertools.count(1_000_001), itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        serve = lambda: self._httpd.serve_forever(poll_interval=0.01)  # noqa: E731
        self._thread = threading.Thread(target=serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.prefix}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- programming it ---------------------------------------------------------------------

    def add_repo(self, repo: str, prs: tuple[int, ...] = (1,), *, read_only: bool = False) -> None:
        self.repos[repo] = _Repo(set(prs), read_only)

    def add_user(self, token: str, user: User) -> None:
        self.users[token] = user

    def add_comment(self, repo: str, number: int, body: str, user: User = BOT) -> dict[str, Any]:
        with self._lock:
            return self._create(repo, number, body, user)

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        return [self.comments[i] for i in sorted(self.comments) if self._where[i] == (repo, number)]

    def fail(
        self,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        message: str = "",
        times: int = 1,
        method: str | None = None,
        landed: bool = False,
    ) -> None:
        fault = Fault(status, dict(headers or {}), message, method, landed)
        self.faults += [fault] * times

    def primary_rate_limit(self, reset: int, status: int = 403) -> None:
        message = "API rate limit exceeded for installation ID 1."
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        self.fail(status, headers=headers, message=message)

    def secondary_rate_limit(self, retry_after: int, status: int = 429, times: int = 1) -> None:
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        self.fail(status, headers={"Retry-After": str(retry_after)}, message=message, times=times)

    def client(self, token: str = TOKEN, **kw: Any) -> GitHub:
        kw.setdefault("sleep", self.sleeps.append)
        return GitHub(self.url, token, 5.0, proxies={}, **kw)

    def requests(self, method: str | None = None) -> list[Logged]:
        return [r for r in self.log if method is None or r.method == method]

    # -- answering ----------------------------------------------------------------------------

    def _create(self, repo: str, number: int, body: str, user: User) -> dict[str, Any]:
        cid, now = next(self._ids), self._now()
        self.comments[cid] = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{self.url}/repos/{repo}/issues/comments/{cid}",
            "html_url": f"https://github.test/{repo}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
            "body": body,
            "user": {"login": user.login, "id": user.id, "type": user.type},
            "author_association": user.association,
            "created_at": now,
            "updated_at": now,
        }
        self._where[cid] = (repo, number)
        return self.comments[cid]

    def _now(self) -> str:
        return (EPOCH + timedelta(seconds=next(self._ticks))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def answer(self, method: str, target: str, auth: str, host: str, raw: bytes) -> _Answer:
        fault = next((f for f in self.faults if f.method in (None, method)), None)
        if fault is not None:
            self.faults.remove(fault)
            if fault.landed:
                self._answer(method, target, auth, host, raw)
            return _Answer(
                fault.status, {"message": fault.message or "Server Error"}, fault.headers
            )
        return self._answer(method, target, auth, host, raw)

    def _answer(self, method: str, target: str, auth: str, host: str, raw: bytes) -> _Answer:
        body = ""
        split = urllib.parse.urlsplit(target)
        if not split.path.startswith(self.prefix + "/"):
            return _Answer(404, {"message": "Not Found"})
        path = split.path[len(self.prefix) :]
        scheme, _, token = auth.partition(" ")
        if not auth:
            return _Answer(401, {"message": "Requires authentication"})
        user = self.users.get(token) if scheme.lower() in ("bearer", "token") else None
        if user is None:
            return _Answer(401, {"message": "Bad credentials"})
        many, one = _LIST.match(path), _ONE.match(path)
        route = many or one
        repo = self.repos.get(route.group(1)) if route else None
        if route is None or repo is None:
            return _Answer(404, {"message": "Not Found"})
        number = int(route.group(2))
        if (many and number not in repo.prs) or (
            one and self._where.get(number, ("", 0))[0] != route.group(1)
        ):
            return _Answer(404, {"message": "Not Found"})
        if method in ("POST", "PATCH"):
            if repo.read_only:
                return _Answer(403, {"message": "Resource not accessible by integration"})
            try:
                body = json.loads(raw or b"{}").get("body")
            except (ValueError, AttributeError):
                return _Answer(400, {"message": "Problems parsing JSON"})
            if not isinstance(body, str):
                return _Answer(422, {"message": 'Invalid request.\n\n"body" wasn\'t supplied.'})
            if len(body) > MAX_BODY:
                error = {"resource": "IssueComment", "code": "unprocessable", "field": "data"}
                error["message"] = "Body is too long (maximum is 65536 characters)"
                return _Answer(422, {"message": "Validation Failed", "errors": [error]})
        if many and method == "POST":
            made = self._create(route.group(1), number, body, user)
            return _Answer(201, made, {"Location": made["url"]})
        if many and method == "GET":
            return self._page(route.group(1), number, split, host)
        if one and method in ("GET", "PATCH"):
            comment = self.comments[number]
            if method == "PATCH":
                comment.update(body=body, updated_at=self._now())
            return _Answer(200, comment)
        return _Answer(404, {"message": "Not Found"})

    def _page(self, repo: str, number: int, split: urllib.parse.SplitResult, host: str) -> _Answer:
        query = dict(urllib.parse.parse_qsl(split.query))
        per_page = min(100, max(1, _int(query.get("per_page"), 30)))
        page = max(1, _int(query.get("page"), 1))
        items = self.comments_on(repo, number)
        last = max(1, math.ceil(len(items) / per_page))
        base = f"http://{host}{self.prefix}/repos/{repo}/issues/{number}/comments"

        def link(n: int, rel: str) -> str:
            q = urllib.parse.urlencode({**query, "per_page": per_page, "page": n})
            return f'<{base}?{q}>; rel="{rel}"'

        rels = [(page - 1, "prev"), (1, "first")] if page > 1 else []
        rels += [(page + 1, "next"), (last, "last")] if page < last else []
        headers = {"Link": ", ".join(link(n, r) for n, r in rels)} if rels else {}
        return _Answer(200, items[(page - 1) * per_page : page * per_page], headers)


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() else default


@dataclass
class _Answer:
    status: int
    doc: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        fake = cast(_Server, self.server).fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        with fake._lock:
            answer = fake.answer(self.command, self.path, auth, self.headers["Host"], raw)
            seen = {
                k: self.headers.get(k, "") for k in ("Accept", "X-GitHub-Api-Version", "User-Agent")
            }
            seen["auth-scheme"] = auth.partition(" ")[0]
            fake.log.append(Logged(self.command, self.path, answer.status, seen))
        data = json.dumps(answer.doc).encode("utf-8")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        limits = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999"}
        for name, value in {**limits, "X-RateLimit-Reset": "1704070800", **answer.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # the log is ``FakeGitHub.log``
        pass


@pytest.fixture
def github_server() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_repo(REPO, prs=(PR, OTHER_PR))
        yield fake
