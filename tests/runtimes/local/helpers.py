"""Helpers for the local runtime tests: workload scripts, requests, specs, waiting."""

from __future__ import annotations

import hashlib
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from substratus.engine.build_source import hash_directory
from substratus.engine.runtime import DeleteRequest, RunContext, RunRequest
from substratus.engine.statefile import PendingOperation, ResourceRecord, new_version
from substratus.runtimes.local.files import read_json
from substratus.runtimes.local.process import ProcessRef, stop

PY = sys.executable

LOADER = """
import json, os, pathlib, sys, time
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
counter = params.get("counter")
if counter:
    with open(counter, "a") as fh:
        fh.write("run\\n")
print("loading", params.get("name"), flush=True)
time.sleep(float(params.get("sleep", 0)))
for i in range(30):
    print(f"line {i}")
if params.get("fail"):
    print("something went wrong", file=sys.stderr)
    sys.exit(int(params["fail"]))
env = {k: v for k, v in os.environ.items() if k.startswith("PARAM_") or k in ("GREETING",)}
out = {"params": params, "env": env, "cwd": os.getcwd(),
       "params_text": (content / "params.json").read_text(),
       "params_mode": (content / "params.json").stat().st_mode & 0o777,
       "data": sorted(os.listdir(content / "data")) if (content / "data").exists() else None,
       "model": sorted(os.listdir(content / "model")) if (content / "model").exists() else None}
(content / "artifacts" / "out.json").write_text(json.dumps(out))
"""

SERVER = """
import json, os, pathlib, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
content = pathlib.Path(os.environ["CONTENT_DIR"])
params = json.loads((content / "params.json").read_text())
time.sleep(float(params.get("startup", 0)))
if params.get("crash"):
    print("cannot load the model", flush=True)
    sys.exit(4)
token = os.environ.get("NOTEBOOK_TOKEN")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if token is not None and f"token={token}" not in self.path:
            self.send_response(403); self.end_headers(); return
        if (content / "sick").exists():
            self.send_response(503); self.end_headers(); return
        body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(),
                           "model": sorted(os.listdir(content / "model"))
                           if (content / "model").exists() else None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

print("listening on", os.environ["PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def make_context(root: Path, files: Mapping[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        if rel.endswith(".sh"):
            path.chmod(0o755)
    return root


def local_build_spec(path: Path) -> dict[str, Any]:
    return {"source": "local", "path": str(path), "contentHash": hash_directory(path)}


def request(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    digest: str | None = None,
    namespace: str = "default",
    **kwargs: Any,
) -> RunRequest:
    """A request for a new run (a fresh version, as the engine makes one per run)."""
    digest = digest or digest_of(f"{kind}/{name}/{sorted(spec.items())!r}")
    kwargs.setdefault("version", new_version(digest))
    return RunRequest(
        address=f"{kind}.{name}",
        kind=kind,
        namespace=namespace,
        name=name,
        digest=digest,
        spec=spec,
        **kwargs,
    )


def job_spec(params: Mapping[str, Any], **container: Any) -> dict[str, Any]:
    return {
        "container": {"local": {"path": "."}, "command": [PY, "load.py"], "env": {}, **container},
        "loader": {"params": dict(params)},
    }


def server_spec(params: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "container": {"local": {"path": "."}, "command": [PY, "serve.py"], "env": {}},
        "model": {"name": "m"},
        "quantization": {"bits": 16},
        "replicas": 1,
        "params": dict(params or {}),
        **fields,
    }


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def cancel_when(phase_prefix: str) -> RunContext:
    """A context that cancels itself once a phase starting with ``phase_prefix`` is reported."""
    event = threading.Event()

    def phase(message: str) -> None:
        if message.startswith(phase_prefix):
            event.set()

    return RunContext(phase=phase, cancelled=event)


def kill_leftovers(root: Path) -> None:
    for name in ("supervisor.json", "child.json", "process.json"):
        for path in root.rglob(name):
            ref = ProcessRef.from_json(read_json(path))
            if ref is not None:
                stop(ref, grace=2.0)


def delete_request(req: RunRequest, outputs: Mapping[str, Any], **kwargs: Any) -> DeleteRequest:
    """A delete of what ``req`` made (its version, as the state lists it)."""
    kwargs.setdefault("versions", (req.run_version,))
    return DeleteRequest(
        req.address, req.kind, req.namespace, req.name, req.digest, req.spec, outputs, **kwargs
    )


def record(req: RunRequest, outputs: Mapping[str, Any], **kwargs: Any) -> ResourceRecord:
    return ResourceRecord(
        kind=req.kind,
        namespace=req.namespace,
        name=req.name,
        spec=dict(req.spec),
        digest=req.digest,
        outputs=dict(outputs),
        **{"version": req.run_version, "versions": [req.run_version], **kwargs},
    )


def pending(req: RunRequest, intent: Mapping[str, Any], action: str = "create") -> PendingOperation:
    return PendingOperation(
        action=action,
        digest=req.digest,
        spec=dict(req.spec),
        started_at="2024-01-01T00:00:00Z",
        intent=dict(intent),
        version=req.run_version,
    )
