"""Model server of the quickstart: serves the n-gram model with an OpenAI-style completions API.

Workload contract (substratus, kept from the original operator):
- the Model's artifacts are read-only in ``$CONTENT_DIR/model/`` (default ``/content/model``);
- listen on ``$PORT`` (default 8080) and answer ``GET /`` with 200 once ready. The server binds
  ``0.0.0.0`` in a container (``CONTENT_DIR`` is ``/content``) and ``127.0.0.1`` otherwise;
- ``QUANTIZATION_BITS`` (from ``spec.quantization``) is only reported; n-gram counts are not
  quantized.

API: ``GET /`` -> ``{"status": "ok", "model": ...}``; ``POST /v1/completions`` with
``{"prompt": str, "max_tokens": int, "temperature"?: number, "seed"?: int}`` -> an OpenAI-style
``text_completion``. A bad body gets 400 with a JSON error; anything else 404.
Python standard library only.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = re.compile(r"[A-Za-z0-9']+|[.,!?;:]")
PUNCTUATION = set(".,!?;:")
START, END = "<s>", "</s>"
MAX_BODY = 1 << 20
MAX_TOKENS = 512


class BadRequest(Exception):
    """The request body is not a valid completion request."""


class NgramModel:
    """A word n-gram model with backoff to shorter contexts (see base/load.py for the format)."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.order: int = int(data["order"])
        self.counts: dict[str, dict[str, float]] = data["counts"]
        config_path = path.parent / "config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.name: str = os.environ.get("MODEL_NAME") or config.get("name", path.parent.name)

    def next_word(self, history: list[str], rng: random.Random, temperature: float) -> str:
        """Sample the next word after ``history`` from the longest context the model has seen."""
        for k in range(min(self.order - 1, len(history)), -1, -1):
            table = self.counts.get(" ".join(history[len(history) - k :]))
            if table:
                break
        else:
            return END
        words = sorted(table)
        if temperature <= 0:
            return max(words, key=lambda w: table[w])
        weights = [table[w] ** (1.0 / temperature) for w in words]
        return rng.choices(words, weights=weights)[0]

    def complete(self, prompt: str, max_tokens: int, temperature: float, seed: int | None) -> str:
        rng = random.Random(seed)
        history = [START] * (self.order - 1) + TOKEN.findall(prompt)
        out: list[str] = []
        for _ in range(4 * max_tokens):  # bounded, even for a model that only ends sentences
            word = self.next_word(history, rng, temperature)
            if word == END:  # end of a sentence: start a new one
                history += [END] + [START] * (self.order - 1)
                continue
            out.append(word)
            history.append(word)
            if len(out) == max_tokens:
                break
        text = "".join(w if w in PUNCTUATION else " " + w for w in out)
        return text if prompt and not prompt[-1].isspace() else text.lstrip()


def parse_request(body: bytes) -> tuple[str, int, float, int | None]:
    try:
        req = json.loads(body or b"null")
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(req, dict):
        raise BadRequest("body must be a JSON object")
    prompt, max_tokens = req.get("prompt", ""), req.get("max_tokens", 16)
    temperature, seed = req.get("temperature", 1.0), req.get("seed")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string")
    if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS:
        raise BadRequest(f"'max_tokens' must be an integer from 1 to {MAX_TOKENS}")
    if type(temperature) not in (int, float) or not 0 <= temperature <= 10:
        raise BadRequest("'temperature' must be a number from 0 to 10")
    if seed is not None and type(seed) is not int:
        raise BadRequest("'seed' must be an integer")
    return prompt, max_tokens, float(temperature), seed


class Handler(BaseHTTPRequestHandler):
    model: NgramModel

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status: int, message: str, kind: str) -> None:
        self.send_json(status, {"error": {"message": message, "type": kind}})

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/":
            return self.send_error_json(404, f"no route GET {self.path}", "not_found")
        bits = os.environ.get("QUANTIZATION_BITS")
        self.send_json(
            200,
            {
                "status": "ok",
                "model": self.model.name,
                "order": self.model.order,
                "quantization_bits": int(bits) if bits and bits.isdigit() else None,
            },
        )

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/v1/completions":
            return self.send_error_json(404, f"no route POST {self.path}", "not_found")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.send_error_json(413, "body too large", "invalid_request_error")
        try:
            prompt, max_tokens, temperature, seed = parse_request(self.rfile.read(length))
        except BadRequest as exc:
            return self.send_error_json(400, str(exc), "invalid_request_error")
        text = self.model.complete(prompt, max_tokens, temperature, seed)
        prompt_tokens, completion_tokens = len(TOKEN.findall(prompt)), len(TOKEN.findall(text))
        finish = "length" if completion_tokens >= max_tokens else "stop"
        self.send_json(
            200,
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.model.name,
                "choices": [{"text": text, "index": 0, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> int:
    content = os.environ.get("CONTENT_DIR", "/content")
    model_path = Path(content) / "model" / "model.json"
    if not model_path.is_file():
        print(f"error: no model at {model_path} (is spec.model set?)", file=sys.stderr)
        return 1
    Handler.model = NgramModel(model_path)
    host = "0.0.0.0" if os.path.abspath(content) == "/content" else "127.0.0.1"
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {Handler.model.name} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
