"""The workload contract on this machine (DESIGN §8): content directory and environment.

A workload's ``/content`` is a fresh directory named by ``CONTENT_DIR`` holding ``params.json``
and links ``data/``, ``model/`` (inputs, read-only) and ``artifacts/`` (output). Params are also
passed as ``PARAM_<KEY>`` (key upper-cased, non-alphanumerics → ``_``; strings as is, other values
as JSON). The container's ``env`` is applied after them; the variables substratus owns
(``CONTENT_DIR``, ``PORT``…) are applied last so a workload always finds them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from substratus.engine.spec import secret_refs
from substratus.runtimes.contract import param_env
from substratus.runtimes.local.files import remove_tree


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
    """Parent env (minus inherited ``PARAM_*``) + params + container env + ``before_owned``
    + ``owned`` (in that order, later wins)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAM_")}
    env.update(param_env(params))
    env.update(container_env(spec))
    env.update(before_owned)
    env.update(owned)
    return env


def prepare_content(content: Path, params: Mapping[str, Any], links: Mapping[str, Path]) -> None:
    """Create a fresh content directory with ``params.json`` and the given symlinks."""
    remove_tree(content)
    content.mkdir(parents=True)
    (content / "params.json").write_text(json.dumps(dict(params), indent=2) + "\n")
    for name, target in links.items():
        (content / name).symlink_to(target, target_is_directory=True)


def input_path(inputs: Mapping[str, Mapping[str, Any]], role: str) -> Path | None:
    """The local artifacts path of the input with ``role`` ("data", "model"), if given."""
    value = (inputs.get(role) or {}).get("artifacts_path")
    return Path(value) if value else None
