"""The workload contract on this machine (DESIGN §8): content directory and environment.

A workload's ``/content`` is a fresh directory named by ``CONTENT_DIR`` holding ``params.json``
and links ``data/``, ``model/`` (inputs, read-only) and ``artifacts/`` (output). Params are also
passed as ``PARAM_<KEY>`` (key upper-cased, non-alphanumerics → ``_``; strings as is, other values
as JSON). The container's ``env`` is applied after them; the variables substratus owns
(``CONTENT_DIR``, ``PORT``…) are applied last so a workload always finds them. Of the operator's
environment a workload sees only the allowlist and the names it passes (``runtimes.contract``):
the same rule as in a container.

``params.json`` may hold sensitive params: it is created readable by its owner only (0600, no
window), and removed when the run ends, unless the run failed (``forget_params``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus.engine.spec import secret_refs
from substratus.runtimes.contract import host_env, param_env, passed_env
from substratus.runtimes.local.files import remove_tree

PARAMS_FILE = "params.json"  # RunFiles.params


def container_env(spec: Mapping[str, Any]) -> dict[str, str]:
    env = (spec.get("container") or {}).get("env") or {}
    return {str(k): str(v) for k, v in env.items()}


def secret_env_names(spec: Mapping[str, Any]) -> list[str]:
    """Container env names whose values reference Kubernetes Secrets."""
    return sorted(secret_refs(container_env(spec)))


def workload_env(
    params: Mapping[str, Any],
    spec: Mapping[str, Any],
    before_owned: Mapping[str, str],
    owned: Mapping[str, str],
) -> dict[str, str]:
    """The allowlist of the operator's environment + ``LOCAL_DEFAULTS`` + the names the
    workload passes + params + container env + ``before_owned`` + ``owned`` (in that order,
    later wins)."""
    env = host_env(os.environ)
    env.update(LOCAL_DEFAULTS)
    env.update(passed_env(spec, os.environ))
    env.update(param_env(params))
    env.update(container_env(spec))
    env.update(before_owned)
    env.update(owned)
    return env


# Output reaches log.txt as it is written (what `logs --follow` shows), whatever the shell had.
LOCAL_DEFAULTS = {"PYTHONUNBUFFERED": "1"}
SUPERVISOR_ENV = ("PYTHONPATH",)  # what `python -m …supervise` may need to import substratus


def supervisor_env(job: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The supervisor's environment: the job's, plus the operator's ``SUPERVISOR_ENV`` variables
    the job does not set itself; and those names, which the supervisor unsets for the job."""
    extra = {k: os.environ[k] for k in SUPERVISOR_ENV if k in os.environ and k not in job}
    return {**job, **extra}, sorted(extra)


def prepare_content(
    content: Path, params: Mapping[str, Any], links: Mapping[str, Path], fresh: bool = False
) -> None:
    """Create a fresh content directory with ``params.json`` and the given symlinks
    (``fresh``: its parent was made just now, so there is nothing to remove first)."""
    if not fresh:
        remove_tree(content)
    content.mkdir(parents=True)
    write_private(content / PARAMS_FILE, json.dumps(dict(params), indent=2) + "\n")
    for name, target in links.items():
        (content / name).symlink_to(target, target_is_directory=True)


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others, not even for a
    moment) and write ``text``; an existing file is replaced."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def forget_params(content: Path) -> None:
    """Remove a run's ``params.json`` (the run ended; it may hold sensitive values)."""
    (content / PARAMS_FILE).unlink(missing_ok=True)


def input_path(inputs: Mapping[str, Mapping[str, Any]], role: str) -> Path | None:
    """The local artifacts path of the input with ``role`` ("data", "model"), if given."""
    value = (inputs.get(role) or {}).get("artifacts_path")
    return Path(value) if value else None
