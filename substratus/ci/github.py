"""A small GitHub REST client on the standard library: the three calls a sticky PR comment needs.

``GitHub(api_url, token, timeout)`` lists the comments of an issue or pull request
(``issue_comments``, following every ``Link: <…>; rel="next"`` page, ``per_page=100``), creates
one (``create_comment``) and edits one (``update_comment``). ``api_url`` is
``https://api.github.com`` or a GitHub Enterprise Server API (``https://HOST/api/v3``): what
``$GITHUB_API_URL`` says in GitHub Actions.

Contracts:

- Every request sends ``Authorization: Bearer <token>``, ``Accept: application/vnd.github+json``,
  ``X-GitHub-Api-Version: 2022-11-28`` and a ``User-Agent``. The token is never printed: it is in
  no message, no ``repr``, and it is not sent on a redirect or a next-page link to another host.
- Every failure is one ``GitHubError`` (a ``DiagnosticError``: the CLI prints it without a
  traceback) saying what failed and what to do: 401 (token rejected), 403 with
  ``X-RateLimit-Remaining: 0`` (rate limit, with the reset time from ``X-RateLimit-Reset``),
  403/429 with ``Retry-After`` (secondary rate limit: waited out once when ≤ 60 s, then retried;
  longer, or a second time, is an error), any other 403 (permission: a workflow needs
  ``permissions: pull-requests: write``), 404 (repository or PR not found, or invisible to the
  token), 422 (GitHub's own validation messages), other answers (status and message).
- 5xx answers and connection errors/timeouts are retried: ``attempts`` (3) tries in all, waiting
  ``first_delay`` (1 s) then twice as long each time; ``sleep`` is injectable for tests. A POST
  is not idempotent: ``create_comment(..., retry_transient=False)`` fails at once with a
  ``transient`` error so the caller can look before posting again (``comment.upsert`` does).
- ``proxies=None`` uses the proxy environment variables (urllib's default); ``{}`` uses none.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.message import Message
from typing import IO, Any

from substratus import __version__
from substratus.engine.backoff import Backoff, GaveUp, retry
from substratus.engine.diagnostic import Diagnostic, DiagnosticError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = f"substratus/{__version__} (+https://github.com/substratusai/substratus)"
PER_PAGE = 100
MAX_RETRY_AFTER_S = 60.0
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="([^"]*)"')
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
TOKEN_HELP = (
    "Check GITHUB_TOKEN (or GH_TOKEN): it may be invalid, expired or revoked, or made for another "
    "GitHub host. In GitHub Actions pass `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`; on "
    "GitHub Enterprise Server GITHUB_API_URL must be the server's API (https://HOST/api/v3)."
)
PERMISSION_HELP = (
    "The token cannot write comments on this pull request. In a GitHub Actions workflow grant "
    "`permissions: pull-requests: write` (on the workflow or the job); a fine-grained token needs "
    'the repository permission "Pull requests: write" (or "Issues: write"). A workflow run for a '
    "pull request from a fork gets a read-only token whatever it asks for."
)


class GitHubError(DiagnosticError):
    """A failed GitHub call or a missing CI setting: ``message`` (what), ``detail`` (what to do).

    ``status`` is the HTTP status (None without an answer); ``transient`` is True for 5xx and
    connection failures, which may succeed when tried again."""

    def __init__(
        self, message: str, detail: str = "", *, status: int | None = None, transient: bool = False
    ) -> None:
        super().__init__(Diagnostic.error(message, detail))
        self.message, self.detail, self.status, self.transient = message, detail, status, transient

    @classmethod
    def several(cls, problems: Sequence[tuple[str, str]]) -> GitHubError:
        """One error carrying one diagnostic per ``(message, detail)`` (at least one)."""
        err = cls(*problems[0])
        err.diagnostics = [Diagnostic.error(m, d) for m, d in problems]
        err.args = ("; ".join(m for m, _ in problems),)
        return err


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class _SameOriginAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, carrying the Authorization header only to the same scheme and host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", auth)
        return new


def repo_path(repo: str) -> str:
    """``/repos/OWNER/NAME`` for ``OWNER/NAME``; anything else is a ``GitHubError``."""
    if not _REPO.match(repo):
        raise GitHubError(
            f"invalid repository {repo!r}: expected OWNER/NAME",
            "Pass --repo OWNER/NAME, or set GITHUB_REPOSITORY (GitHub Actions sets it).",
        )
    owner, name = repo.split("/")
    return f"/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(name)}"


def _github_message(raw: bytes) -> str:
    """GitHub's ``message`` and each ``errors[].message`` (or code/field), at most 500 chars."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:500]
    if not isinstance(doc, dict):
        return ""
    parts = [str(doc.get("message", "")).strip()]
    for e in doc.get("errors") or []:
        if isinstance(e, dict):
            parts.append(str(e.get("message") or f"{e.get('field', '?')} {e.get('code', '')}"))
        else:
            parts.append(str(e))
    return ": ".join(p for p in parts if p)[:500]


def _retry_after(headers: Message) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: treat as long
        return float("inf")


class GitHub:
    """The GitHub REST calls of the sticky comment (see the module docstring)."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        token: str = "",
        timeout: float = 30.0,
        *,
        attempts: int = 3,
        first_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._token = token
        self.timeout, self.sleep = timeout, sleep
        # first_delay, then twice as long each time; no jitter (the waits are part of the contract)
        self.policy = Backoff(
            first=first_delay,
            maximum=first_delay * 2**attempts,
            jitter=0.0,
            attempts=max(1, attempts),
        )
        handlers: list[urllib.request.BaseHandler] = [_SameOriginAuthRedirect()]
        if proxies is not None:
            handlers.append(urllib.request.ProxyHandler(dict(proxies)))
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"GitHub(api_url={self.api_url!r}, token='***')"

    # -- the calls ------------------------------------------------------------------------------

    def issue_comments(self, repo: str, number: int) -> Iterator[dict[str, Any]]:
        """Every comment of issue/PR ``number``, oldest first, page by page (lazily)."""
        url: str | None = f"{self.api_url}{repo_path(repo)}/issues/{number}/comments"
        url = f"{url}?per_page={PER_PAGE}"
        target = f"pull request #{number} in {repo}"
        while url is not None:
            page, headers = self._call("GET", url, "list the comments of", target)
            if not isinstance(page, list):
                raise GitHubError(f"GitHub answered the comments of {target} with no list")
            yield from (c for c in page if isinstance(c, dict))
            url = self._next_link(headers)

    def create_comment(
        self, repo: str, number: int, body: str, *, retry_transient: bool = True
    ) -> dict[str, Any]:
        url = f"{self.api_url}{repo_path(repo)}/issues/{number}/comments"
        target = f"pull request #{number} in {repo}"
        doc, _ = self._call("POST", url, "comment on", target, {"body": body}, retry_transient)
        return _object(doc, target)

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        url = f"{self.api_url}{repo_path(repo)}/issues/comments/{comment_id}"
        target = f"comment {comment_id} in {repo}"
        doc, _ = self._call("PATCH", url, "edit", target, {"body": body})
        return _object(doc, target)

    # -- plumbing -------------------------------------------------------------------------------

    def _next_link(self, headers: Message) -> str | None:
        for url, rels in _LINK.findall(headers.get("Link") or ""):
            if "next" in rels.split():
                if _origin(url) != _origin(self.api_url):
                    raise GitHubError(
                        f"GitHub's next-page link points to another host ({_origin(url)[1]})",
                        "The token is not sent there. Check GITHUB_API_URL and any proxy.",
                    )
                return str(url)
        return None

    def _call(
        self,
        method: str,
        url: str,
        action: str,
        target: str,
        payload: dict[str, Any] | None = None,
        retry_transient: bool = True,
    ) -> tuple[Any, Message]:
        """One request, retried with ``self.policy`` while it fails transiently (unless
        ``retry_transient`` is False); the last error says how many times it was tried."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        waited: list[bool] = []  # the one wait for a short secondary rate limit, once taken
        try:
            return retry(
                lambda: self._once(method, url, data, action, target, waited),
                self.policy,
                retryable=lambda e: retry_transient and isinstance(e, GitHubError) and e.transient,
                sleep=self.sleep,
            )
        except GaveUp as gave:
            last = gave.last
            if gave.attempts == 1 or not isinstance(last, GitHubError):
                raise last from None
            raise GitHubError(
                f"{last.message} (tried {gave.attempts} times)",
                last.detail,
                status=last.status,
                transient=True,
            ) from None

    def _once(
        self,
        method: str,
        url: str,
        data: bytes | None,
        action: str,
        target: str,
        waited: list[bool],
    ) -> tuple[Any, Message]:
        """One try; a ``GitHubError`` (``transient`` for 5xx and no answer) when it fails."""
        while True:
            req = urllib.request.Request(url, data=data, method=method)
            if self._token:
                req.add_unredirected_header("Authorization", f"Bearer {self._token}")
            req.add_header("Accept", "application/vnd.github+json")
            req.add_header("X-GitHub-Api-Version", API_VERSION)
            req.add_header("User-Agent", USER_AGENT)
            if data is not None:
                req.add_header("Content-Type", "application/json; charset=utf-8")
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw, headers = resp.read(), resp.headers
                return self._decode(raw, action, target), headers
            except urllib.error.HTTPError as err:
                with err:
                    raw = err.read() if err.fp is not None else b""
                error = self._refusal(err.code, err.headers, raw, action, target, bool(waited))
                if error is not None:
                    raise error from None
                waited.append(True)  # a short secondary rate limit: wait it out once
                self.sleep(_retry_after(err.headers) or 0.0)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", None) or err
                raise GitHubError(
                    f"cannot reach GitHub at {self.api_url} to {action} {target}: {reason}",
                    "Check the network, the proxy settings and GITHUB_API_URL.",
                    transient=True,
                ) from None

    def _decode(self, raw: bytes, action: str, target: str) -> Any:
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise GitHubError(
                f"GitHub's answer when trying to {action} {target} is not JSON",
                f"Is {self.api_url} a GitHub API? On GitHub Enterprise Server, GITHUB_API_URL is "
                "https://HOST/api/v3.",
            ) from None

    def _refusal(
        self, status: int, headers: Message, raw: bytes, action: str, target: str, waited: bool
    ) -> GitHubError | None:
        """The error for an error answer; None when a short secondary rate limit may be waited."""
        said = _github_message(raw)
        what = f"cannot {action} {target}"
        if status == 401:
            return GitHubError(
                f"{what}: GitHub rejected the token (401 {said})", TOKEN_HELP, status=401
            )
        if status in (403, 429):
            after = _retry_after(headers)
            if after is not None and after <= MAX_RETRY_AFTER_S and not waited:
                return None
            primary = after is None and headers.get("X-RateLimit-Remaining") == "0"
            if not primary and (after is not None or status == 429 or "secondary" in said):
                wait = f"retry after {after:.0f} seconds" if after is not None else "wait a minute"
                return GitHubError(
                    f"{what}: GitHub's secondary rate limit ({status}): {wait}",
                    "Too many requests in a short time (often several jobs commenting at once). "
                    "Run the step again later.",
                    status=status,
                )
            if primary:
                reset = headers.get("X-RateLimit-Reset", "")
                when = (
                    datetime.fromtimestamp(int(reset), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                    if reset.isdigit()
                    else "an unknown time"
                )
                return GitHubError(
                    f"{what}: GitHub API rate limit exceeded ({status}); it resets at {when}",
                    "Wait until then, or use a token with a higher limit.",
                    status=status,
                )
            return GitHubError(
                f"{what}: permission denied (403 {said})", PERMISSION_HELP, status=403
            )
        if status == 404:
            return GitHubError(
                f"{what}: not found (404)",
                f"The repository or the pull request does not exist on {self.api_url}, or the "
                "token cannot see it (GitHub answers 404 for private repositories it has no access "
                "to). Check --repo/GITHUB_REPOSITORY, --pr and the token's repository access.",
                status=404,
            )
        if status == 422:
            return GitHubError(
                f"{what}: GitHub refused it (422 {said})",
                "GitHub allows at most 65,536 characters in a comment.",
                status=422,
            )
        return GitHubError(
            f"{what}: GitHub answered {status} {said}".rstrip(),
            "GitHub may be having trouble (https://www.githubstatus.com): run the step again later."
            if status >= 500
            else "",
            status=status,
            transient=status >= 500,
        )


def _object(doc: Any, target: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise GitHubError(f"GitHub's answer about {target} is not a JSON object")
    return doc
