"""Dataset loader of the quickstart: publishes the shipped corpus as the Dataset's artifacts.

Workload contract (substratus, kept from the original operator):
- ``$CONTENT_DIR`` (default ``/content``) holds ``params.json``; output goes to
  ``$CONTENT_DIR/artifacts/``. Each param is also in the environment as ``PARAM_<KEY>``.
- Params: ``lowercase`` (bool, default false) lower-cases the corpus.

Writes ``artifacts/corpus.txt`` (one sentence per line) and ``artifacts/metadata.json``
(line count, byte count, sha256). Python standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus.txt"


def read_params(content: Path) -> dict[str, Any]:
    """The params of this run: ``params.json`` if present, else the ``PARAM_*`` variables."""
    path = content / "params.json"
    if path.is_file():
        params = json.loads(path.read_text(encoding="utf-8") or "{}")
        if not isinstance(params, dict):
            raise SystemExit(f"error: {path} must hold a JSON object")
        return params
    return {k[6:].lower(): v for k, v in os.environ.items() if k.startswith("PARAM_")}


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def main() -> int:
    content = Path(os.environ.get("CONTENT_DIR", "/content"))
    params = read_params(content)
    lowercase = as_bool(params.get("lowercase", False))

    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    lines = [line.lower() if lowercase else line for line in lines if line]
    text = "\n".join(lines) + "\n"

    artifacts = content / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "corpus.txt").write_text(text, encoding="utf-8")
    data = text.encode("utf-8")
    metadata = {
        "lines": len(lines),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "lowercase": lowercase,
    }
    (artifacts / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"wrote {len(lines)} lines ({len(data)} bytes) to {artifacts / 'corpus.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
