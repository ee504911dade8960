"""Attempts of a job run: what ``spec.retries`` restarts, and why (DESIGN §8, issue #15).

A run of a Dataset or Model makes one version; with ``spec.retries: N`` a failed attempt starts
again — into the same version directory, with what it wrote under ``artifacts/`` kept — up to N
times. A *disruption* (a preempted or evicted pod on Kubernetes) starts it again too without
counting against N (``FailedAttempt.counted`` False). The workload sees its attempt as
``SUBSTRATUS_ATTEMPT`` (1, 2, …; ``runtimes.contract``).

- A runtime reports each failed attempt it learns about through ``RunContext.restart`` — also
  those that failed before it started watching (a run adopted after a crash): the walker keeps
  one per ``number`` (``Attempts``), emits one ``restart`` event for each new one, and records
  them with the run (``statefile.RunRecord.attempts`` / ``failed_attempts``).
- ``reason`` is one short phrase that names the cause: ``exit code 3``, ``OOMKilled (exit code
  137)``, ``killed by signal 9``, ``preempted (DisruptionTarget: …)``.

Pure; no I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FailedAttempt:
    """Attempt ``number`` (1-based) of a run failed for ``reason``; ``counted``: it counts
    against ``spec.retries`` (a disruption does not); ``final``: no attempt follows it."""

    number: int
    reason: str
    counted: bool = True
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempt": self.number, "reason": self.reason}
        if not self.counted:
            out["counted"] = False
        return out

    def message(self) -> str:
        """What the progress line says: ``attempt 1 failed (exit code 3); attempt 2 starts``."""
        said = f"attempt {self.number} failed ({self.reason})"
        if self.final:
            return said
        extra = "; not counted against retries" if not self.counted else ""
        return f"{said}{extra}; attempt {self.number + 1} starts"


@dataclass
class Attempts:
    """The failed attempts a runtime reported for one run, each once (thread-safe)."""

    failed: dict[int, FailedAttempt] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, attempt: FailedAttempt) -> bool:
        """Keep ``attempt``; False when its number was reported already."""
        with self._lock:
            if attempt.number in self.failed:
                return False
            self.failed[attempt.number] = attempt
            return True

    def ordered(self) -> list[FailedAttempt]:
        with self._lock:
            return [self.failed[n] for n in sorted(self.failed)]

    def count(self, succeeded: bool) -> int:
        """How many attempts the run made: the failed ones, and the one that succeeded."""
        with self._lock:
            made = max(self.failed, default=0)
        return made + 1 if succeeded else max(made, 1)
