"""``Failure``: the one error type at the runtime boundary.

Every runtime (local, Kubernetes) and artifact store raises ``Failure`` when work cannot be
done; the walker (``engine.apply``) and the CLI's reporting read its fields and never convert it.
Contracts:

- ``summary`` is one line saying what failed; ``detail`` says why and what to do (it may carry
  the tail of a workload's log, several lines). Both are shown to the user as they are.
- ``retryable`` is True when the same request may succeed if simply made again later (the server
  kept answering 429/5xx, the connection kept dropping, past the retries of ``engine.backoff``);
  False when something must change first (credentials, permissions, the spec, a workload that
  exited with an error).
- ``log_path`` names the workload's full log when there is one.
- ``status`` is the HTTP status of the answer that failed, when the failure is one (the
  Kubernetes API server's, a signed URL's); ``None`` otherwise.
- ``address`` is the resource it concerns when the raiser knows it (the walker knows it anyway).

User input that is wrong (the configuration) is a ``engine.diagnostic.Diagnostic`` instead.
"""

from __future__ import annotations


class Failure(Exception):
    """Work a runtime could not do (see the module docstring)."""

    def __init__(
        self,
        summary: str,
        detail: str = "",
        log_path: str | None = None,
        *,
        retryable: bool = False,
        status: int | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.retryable = retryable
        self.log_path = log_path
        self.status = status
        self.address = address

    def __repr__(self) -> str:
        return f"Failure({self.summary!r}, {self.detail!r}, retryable={self.retryable})"
