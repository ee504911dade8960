"""Base-model loader of the quickstart: builds a tiny word n-gram language model from seed text.

Workload contract (substratus, kept from the original operator):
- ``$CONTENT_DIR`` (default ``/content``) holds ``params.json``; output goes to
  ``$CONTENT_DIR/artifacts/``. Each param is also in the environment as ``PARAM_<KEY>``.
- Params: ``order`` (int 1-5, default 2): the n of the n-gram model.

Writes ``artifacts/model.json`` (the counts) and ``artifacts/config.json``. The model format:
``{"order": n, "counts": {context: {next_word: count}}}`` where ``context`` is the previous
0..n-1 words joined by single spaces (``""`` is the unigram table); sentences are padded with
``<s>`` and end with ``</s>``. Python standard library only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

SEED_TEXT = """\
The model reads words and counts them.
A machine learns from the data it is given.
The data teaches the model which word comes next.
A small model is quick to train and easy to read.
The server answers with the words the model has learned.
"""
TOKEN = re.compile(r"[A-Za-z0-9']+|[.,!?;:]")
START, END = "<s>", "</s>"

Counts = dict[str, dict[str, float]]


def read_params(content: Path) -> dict[str, Any]:
    """The params of this run: ``params.json`` if present, else the ``PARAM_*`` variables."""
    path = content / "params.json"
    if path.is_file():
        params = json.loads(path.read_text(encoding="utf-8") or "{}")
        if not isinstance(params, dict):
            raise SystemExit(f"error: {path} must hold a JSON object")
        return params
    return {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("PARAM_")}


def ngram_counts(text: str, order: int) -> Counts:
    """Counts of every (context of 0..order-1 words, next word) pair, one sentence per line."""
    counts: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        words = TOKEN.findall(line)
        if not words:
            continue
        padded = [START] * (order - 1) + words + [END]
        for i in range(order - 1, len(padded)):
            for k in range(order):  # context lengths 0..order-1
                counts[" ".join(padded[i - k : i])][padded[i]] += 1.0
    return {ctx: dict(nxt) for ctx, nxt in counts.items()}


def main() -> int:
    content = Path(os.environ.get("CONTENT_DIR", "/content"))
    try:
        order = int(read_params(content).get("order", 2))
    except (TypeError, ValueError):
        print("error: param 'order' must be an integer", file=sys.stderr)
        return 1
    if not 1 <= order <= 5:
        print(f"error: param 'order' must be between 1 and 5, got {order}", file=sys.stderr)
        return 1

    counts = ngram_counts(SEED_TEXT, order)
    vocab = sorted(counts[""])
    artifacts = content / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    model = {"order": order, "counts": counts}
    (artifacts / "model.json").write_text(json.dumps(model, sort_keys=True) + "\n")
    config = {"name": f"ngram-{order}", "order": order, "vocab_size": len(vocab), "trained": False}
    (artifacts / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"built a {order}-gram model with {len(vocab)} words from {len(SEED_TEXT)} bytes of seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
