"""The workload contract shared by every runtime (DESIGN §8): what a workload finds in its
environment, independent of where it runs.

- ``param_env(params)``: ``PARAM_<KEY>`` for each top-level param (key upper-cased,
  non-alphanumerics → ``_``; strings as is, other values as JSON);
- ``quantization_env(spec)``: a ModelServer's ``quantization.bits`` as the server images expect it
  (``QUANTIZATION_BITS`` always; ``MODEL_LOAD_IN_4BIT`` / ``MODEL_LOAD_IN_8BIT`` = ``true``);
- ``CONTENT_DIR``: where ``/content`` is (``/content`` in a container).

Pure functions; no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

CONTENT = "/content"
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
