"""The workload contract shared by every runtime (DESIGN §8): what a workload finds in its
environment, independent of where it runs.

- ``param_env(params)``: ``PARAM_<KEY>`` for each top-level param (key upper-cased,
  non-alphanumerics → ``_``; strings as is, other values as JSON);
- ``quantization_env(spec)``: a ModelServer's ``quantization.bits`` as the server images expect it
  (``QUANTIZATION_BITS`` always; ``MODEL_LOAD_IN_4BIT`` / ``MODEL_LOAD_IN_8BIT`` = ``true``);
- ``CONTENT_DIR``: where ``/content`` is (``/content`` in a container);
- ``SUBSTRATUS_ATTEMPT`` (``ATTEMPT_ENV``): a job's attempt, 1, 2, … — more than 1 when
  ``spec.retries`` started a failed (or preempted) run again into the same version, with what
  it wrote under ``artifacts/`` kept (a trainer resumes from its last checkpoint). The local
  supervisor sets it for each start; on Kubernetes the pod's command is wrapped in a ``/bin/sh``
  step that counts starts in ``artifacts/.substratus/attempt`` (``ATTEMPT_FILE``; with a
  ``-<index>`` suffix per rank of an Indexed Job), as a pod cannot learn it otherwise;
- ``host_env(environ)``: the documented allowlist (``HOST_ENV``, ``HOST_ENV_PREFIXES``) a local
  process keeps from the operator's environment — never anything else (a container starts from
  its image's environment, which holds the same kind of variables);
- ``passed_env(spec, environ)``: the operator's variables a workload asks for by name
  (``container.passEnv``), plus those the operator lists in ``SUBSTRATUS_PASS_ENV``
  (comma-separated); taken from the operator's environment when the workload starts, on every
  runtime, so a job depends on nothing it did not name. Names that are not set are left out.
  Their values are environment, like a Secret: never in a digest, a plan or the state; a change
  of the ``passEnv`` list is a change of the spec.

A job on more than one node (``resources.nodes`` N above 1) also gets, on every rank,
``MASTER_ADDR`` (rank 0's address), ``MASTER_PORT``, ``WORLD_SIZE`` = N and ``RANK`` =
``NODE_RANK`` = its index (``runtimes.local.ranks``, ``runtimes.kubernetes.indexed``); a job on
one node gets none of them.

Order (later wins): allowlist < passed < ``PARAM_*`` < ``container.env`` < substratus' own
variables (``CONTENT_DIR``, ``PORT``, the rank variables, …). Pure functions; no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from substratus.engine.spec import ENV_NAME

CONTENT = "/content"
PASS_ENV = "SUBSTRATUS_PASS_ENV"  # the operator's own list of names every workload is given
HOST_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TMPDIR",
        "TZ",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "NVIDIA_DRIVER_CAPABILITIES",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
    }
)
HOST_ENV_PREFIXES = ("LC_",)

ATTEMPT_ENV = "SUBSTRATUS_ATTEMPT"
ATTEMPT_FILE = ".substratus/attempt"  # under artifacts/, Kubernetes only (``ATTEMPT_ENV``)

SERVER_PORT = 8080
NOTEBOOK_PORT = 8888


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """``PARAM_<KEY>`` variables for the top-level params."""
    env = {}
    for key, value in params.items():
        name = "PARAM_" + re.sub(r"[^A-Z0-9]", "_", str(key).upper())
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


def quantization_env(spec: Mapping[str, Any]) -> dict[str, str]:
    """The server image's load-in-4/8-bit setting for ``quantization.bits``."""
    bits = int((spec.get("quantization") or {}).get("bits", 16))
    env = {"QUANTIZATION_BITS": str(bits)}
    if bits in (4, 8):
        env[f"MODEL_LOAD_IN_{bits}BIT"] = "true"
    return env


def host_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allowlisted variables of ``environ`` (what a local process keeps of the operator's).
    Only the values kept are read (``os.environ`` decodes each value it is asked for)."""
    return {k: environ[k] for k in environ if k in HOST_ENV or k.startswith(HOST_ENV_PREFIXES)}


def pass_names(spec: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The names a workload is given from the operator's environment: ``container.passEnv``,
    then the valid names of ``$SUBSTRATUS_PASS_ENV``; without duplicates."""
    listed = list((spec.get("container") or {}).get("passEnv") or [])
    extra = [n.strip() for n in environ.get(PASS_ENV, "").split(",")]
    return list(dict.fromkeys(n for n in [*listed, *extra] if n and ENV_NAME.match(n)))


def passed_env(spec: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of ``pass_names`` that ``environ`` sets."""
    return {n: environ[n] for n in pass_names(spec, environ) if n in environ}
