"""Plans of the two examples for the estimate tests, made by the in-memory ``Harness``.

``quickstart(tmp)`` and ``falcon(tmp, monkeypatch)`` copy the example into ``tmp`` (falcon's git
ref resolves to a fixed commit, without the network) and return a ``Harness`` over it. ``applied``
applies the configuration and records deterministic run durations (``DURATIONS``), so the next
plan's jobs have the durations of their "last successful run".
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.plan import Plan
from tests.support.engine import Harness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DURATIONS = {
    # quickstart
    "build.loader": 42.0,
    "build.base": 40.0,
    "build.trainer": 41.0,
    "build.server": 39.0,
    "dataset.tiny-corpus": 75.0,
    "model.base-ngram": 300.0,
    "model.tuned-ngram": 1800.0,
    # falcon-7b
    "build.images-dataset-loader-http-bcd7da": 185.0,
    "dataset.k8s-instructions": 95.0,
    "model.falcon-7b": 1260.0,  # 21 min to download the weights
    "model.falcon-7b-k8s": 5400.0,  # 1 h 30 min of training on 4 x L4
}


def quickstart(tmp: Path) -> Harness:
    shutil.copytree(EXAMPLES / "quickstart", tmp, dirs_exist_ok=True)
    return Harness(tmp)


def falcon(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setattr("substratus.engine.digest.resolve_git_ref", lambda url, ref: COMMIT)
    shutil.copy(EXAMPLES / "falcon-7b" / "substratus.yaml", tmp / "substratus.yaml")
    return Harness(tmp)


def config(h: Harness) -> str:
    return (h.root / "substratus.yaml").read_text()


def applied(h: Harness, failed: frozenset[str] = frozenset()) -> Harness:
    """Apply the configuration as it is and record ``DURATIONS`` as the runs it took."""
    assert h.apply(h.plan()).ok
    h.record_durations(DURATIONS, failed=failed)
    return h


def replan(h: Harness, old: str, new: str, **options: Any) -> Plan:
    """Plan after replacing ``old`` by ``new`` in the configuration."""
    text = config(h)
    assert old in text, old
    return h.plan(text.replace(old, new), **options)
