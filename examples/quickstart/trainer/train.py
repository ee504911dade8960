"""Trainer of the quickstart: fine-tunes the base n-gram model on the Dataset's corpus.

Workload contract (substratus, kept from the original operator):
- ``$CONTENT_DIR`` (default ``/content``) holds ``params.json``, the base Model's artifacts
  read-only in ``model/``, the Dataset's artifacts read-only in ``data/``; output goes to
  ``artifacts/``. Each param is also in the environment as ``PARAM_<KEY>``.
- Params: ``epochs`` (int >= 1, default 3) and ``weight`` (number > 0, default 1.0).

Each epoch adds the corpus's n-gram counts, scaled by ``weight``, to the model and prints the
average negative log-likelihood ("loss") of the corpus under the model so far. Writes
``artifacts/model.json`` (same format as the base model), ``artifacts/config.json`` and
``artifacts/metrics.json``. Exits 1 with a message on stderr when an input is missing.
Python standard library only.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

TOKEN = re.compile(r"[A-Za-z0-9']+|[.,!?;:]")
START, END = "<s>", "</s>"

Counts = dict[str, dict[str, float]]


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def read_params(content: Path) -> dict[str, Any]:
    """The params of this run: ``params.json`` if present, else the ``PARAM_*`` variables."""
    path = content / "params.json"
    if path.is_file():
        params = json.loads(path.read_text(encoding="utf-8") or "{}")
        if not isinstance(params, dict):
            raise SystemExit(f"error: {path} must hold a JSON object")
        return params
    return {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("PARAM_")}


def events(text: str, order: int) -> list[tuple[tuple[str, ...], str]]:
    """Every (previous order-1 words, next word) event of the text, one sentence per line."""
    out = []
    for line in text.splitlines():
        words = TOKEN.findall(line)
        if words:
            padded = [START] * (order - 1) + words + [END]
            for i in range(order - 1, len(padded)):
                out.append((tuple(padded[i - order + 1 : i]), padded[i]))
    return out


def add_counts(counts: Counts, data: list[tuple[tuple[str, ...], str]], weight: float) -> None:
    """Add ``weight`` for every event, for every context length 0..order-1."""
    for context, word in data:
        for k in range(len(context) + 1):
            table = counts.setdefault(" ".join(context[len(context) - k :]), {})
            table[word] = table.get(word, 0.0) + weight


def loss(counts: Counts, data: list[tuple[tuple[str, ...], str]], vocab: int) -> float:
    """Average negative log-likelihood (nats/word), add-one smoothed over ``vocab`` words."""
    totals = {ctx: sum(table.values()) for ctx, table in counts.items()}
    nll = 0.0
    for context, word in data:
        ctx = " ".join(context)
        seen = counts.get(ctx, {}).get(word, 0.0)
        nll -= math.log((seen + 1.0) / (totals.get(ctx, 0.0) + vocab))
    return nll / max(len(data), 1)


def main() -> int:
    content = Path(os.environ.get("CONTENT_DIR", "/content"))
    model_path, corpus_path = content / "model" / "model.json", content / "data" / "corpus.txt"
    if not model_path.is_file():
        return fail(f"no base model at {model_path} (is trainer.baseModel set?)")
    if not corpus_path.is_file():
        return fail(f"no corpus at {corpus_path} (is trainer.dataset set?)")

    params = read_params(content)
    try:
        epochs, weight = int(params.get("epochs", 3)), float(params.get("weight", 1.0))
    except (TypeError, ValueError):
        return fail("params 'epochs' must be an integer and 'weight' a number")
    if epochs < 1 or not weight > 0:
        return fail(f"need epochs >= 1 and weight > 0, got epochs={epochs} weight={weight}")

    try:
        model = json.loads(model_path.read_text(encoding="utf-8"))
        order, counts = int(model["order"]), model["counts"]
    except (ValueError, KeyError, TypeError) as exc:
        return fail(f"{model_path} is not an n-gram model: {exc}")
    data = events(corpus_path.read_text(encoding="utf-8"), order)
    if not data:
        return fail(f"{corpus_path} has no words")

    # Fixed for all epochs so that losses compare: every word of the model and the corpus + <unk>.
    vocab = len(set(counts.get("", {})) | {word for _, word in data}) + 1
    history = [loss(counts, data, vocab)]
    print(f"order {order}, {len(data)} words; before training: loss {history[0]:.4f}", flush=True)
    for epoch in range(1, epochs + 1):
        add_counts(counts, data, weight)
        history.append(loss(counts, data, vocab))
        print(f"epoch {epoch}/{epochs}: loss {history[-1]:.4f}", flush=True)

    artifacts = content / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    model["counts"] = counts
    (artifacts / "model.json").write_text(json.dumps(model, sort_keys=True) + "\n")
    base_config_path = content / "model" / "config.json"
    config = json.loads(base_config_path.read_text()) if base_config_path.is_file() else {}
    config.update(
        name=f"{config.get('name', f'ngram-{order}')}-tuned",
        order=order,
        vocab_size=len(counts.get("", {})),
        trained=True,
    )
    (artifacts / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics = {
        "epochs": epochs,
        "weight": weight,
        "words": len(data),
        "vocab_size": len(counts.get("", {})),
        "loss": [round(x, 6) for x in history],
        "final_loss": round(history[-1], 6),
    }
    (artifacts / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {artifacts / 'model.json'}; final loss {history[-1]:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
