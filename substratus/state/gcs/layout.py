"""Names and values of the GCS state backend: the URL, object names, version tokens, settings.

No I/O here. Contracts:

- URL: ``gs://BUCKET[/PREFIX]``; slashes around the prefix are dropped, so ``gs://b/p/`` and
  ``gs://b/p`` are the same place. A bucket name that GCS would refuse is a ``DiagnosticError``.
- Objects of workspace ``W`` (``Names``), under ``PREFIX/`` (or at the top of the bucket):
  ``W.json`` (the base state), ``W.lock`` (the lock) and the journal, one object per write on top
  of the base: ``W.journal/<generation of the base>/<serial:012d>.json``. Keying the journal by
  the base's generation means a compaction (a new base) starts a fresh journal; journal objects
  of another base are never applied, and ignored only when provably in the base (``reading``).
- ``Token``: the version a reader saw, ``"<base generation>:<serial>"``, with ``":sealed"`` when
  the journal of that base ends with a seal (a compaction claimed the next slot and may not have
  finished). The serial names the next journal slot: ``serial + 1``.
- Settings from the environment: ``SUBSTRATUS_LOCK_LEASE`` (lease of a lock, default ``60s``)
  and ``SUBSTRATUS_GCS_DEADLINE`` (how long to retry a transient failure, default ``120s``);
  durations are written ``500ms``, ``5s``, ``2m``, ``1h`` or plain seconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from substratus.engine.diagnostic import fail

LEASE_ENV = "SUBSTRATUS_LOCK_LEASE"
DEADLINE_ENV = "SUBSTRATUS_GCS_DEADLINE"
DEFAULT_LEASE_S = 60.0
DEFAULT_DEADLINE_S = 120.0
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
SERIAL_DIGITS = 12


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # without leading or trailing "/"; "" for the top of the bucket

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"

    def object(self, name: str) -> str:
        """The object name of ``name`` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri(self, object_name: str) -> str:
        return f"gs://{self.bucket}/{object_name}"


def parse_url(url: str) -> Location:
    """``gs://BUCKET[/PREFIX]`` → ``Location``; raises ``DiagnosticError`` for a bad URL."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "gs":
        raise fail(f"{url!r} is not a gs:// URL", "Write the GCS state URL as gs://BUCKET/PREFIX.")
    bucket, _, prefix = rest.partition("/")
    if not BUCKET_PATTERN.fullmatch(bucket) or ".." in bucket or len(bucket.split(".")[0]) > 63:
        raise fail(
            f"invalid bucket name {bucket!r} in the state URL {url!r}",
            "Bucket names are 3-63 lower-case letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit. Write the state URL as gs://BUCKET/PREFIX, e.g. "
            "gs://my-team-substratus/state.",
        )
    prefix = "/".join(part for part in prefix.split("/") if part)
    return Location(bucket, prefix)


@dataclass(frozen=True)
class Names:
    """The object names of one workspace."""

    location: Location
    workspace: str

    @property
    def state(self) -> str:
        return self.location.object(f"{self.workspace}.json")

    @property
    def lock(self) -> str:
        return self.location.object(f"{self.workspace}.lock")

    @property
    def journal_root(self) -> str:
        return self.location.object(f"{self.workspace}.journal/")

    @property
    def listing_prefix(self) -> str:
        """A prefix whose listing holds the state object and every journal object."""
        return self.location.object(f"{self.workspace}.j")

    def journal(self, generation: int) -> str:
        return f"{self.journal_root}{generation}/"

    def entry(self, generation: int, serial: int) -> str:
        return f"{self.journal(generation)}{serial:0{SERIAL_DIGITS}d}.json"

    def parse_entry(self, name: str) -> tuple[int, int] | None:
        """``(base generation, serial)`` of a journal object name, ``None`` for anything else."""
        if not name.startswith(self.journal_root):
            return None
        generation, _, leaf = name[len(self.journal_root) :].partition("/")
        serial = leaf.removesuffix(".json")
        if not (generation.isdigit() and serial.isdigit() and leaf == f"{serial}.json"):
            return None
        return int(generation), int(serial)


@dataclass(frozen=True)
class Token:
    generation: int  # of the base state object
    serial: int  # of the state after the last journal entry (the base's when there is none)
    sealed: bool = False

    def __str__(self) -> str:
        return f"{self.generation}:{self.serial}" + (":sealed" if self.sealed else "")

    @classmethod
    def parse(cls, text: str) -> Token | None:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
            return None
        if len(parts) == 3 and parts[2] != "sealed":
            return None
        return cls(int(parts[0]), int(parts[1]), len(parts) == 3)


def parse_seconds(text: str, what: str) -> float:
    """A duration (``500ms``, ``5s``, ``2m``, ``1h``, ``30``) in seconds, > 0."""
    t = text.strip().lower()
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("", 1.0))
    for suffix, scale in units:
        number = t[: len(t) - len(suffix)] if suffix else t
        if t.endswith(suffix) and re.fullmatch(r"\d+(\.\d*)?", number):
            value = float(number) * scale
            if value > 0:
                return value
            break
    raise fail(f"invalid {what} {text!r}", "Write a positive duration like 500ms, 5s, 2m or 1h.")


def env_seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return parse_seconds(value, f"{name} value") if value else default
