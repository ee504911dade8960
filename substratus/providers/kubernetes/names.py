"""Names and labels of the Kubernetes objects substratus creates (DESIGN §8).

Every object carries ``app.kubernetes.io/managed-by: substratus``, the label
``substratus.ai/address`` (``kind.name``: label values cannot hold the ``/`` of a namespaced
address; the namespace is the object's own) and ``substratus.ai/digest`` (the first 16 hex digits
of the digest it was applied at); the full address and digest are annotations. Names are
deterministic, so an interrupted apply's objects are found again:

- a Job per run (one version, ``RunRequest.version``): ``{name}-{bld|data|model}-{tag}`` with
  ``tag`` the version's digest prefix and token (``run_tag``; ≤ 63 characters, the limit of
  the ``job-name`` label its pods get), its params ConfigMap ``{job}-params``;
- a ModelServer: Deployment and Service ``{name}-server``, ConfigMap ``{name}-server-params``;
- a Notebook: Pod and Service ``{name}-notebook``, ConfigMap ``{name}-notebook-params``, Secret
  ``{name}-notebook-token``.

Pure functions; no I/O.
"""

from __future__ import annotations

from substratus.providers.local.files import short_digest

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "substratus"  # label value and server-side apply field manager
ADDRESS = "substratus.ai/address"
DIGEST = "substratus.ai/digest"
ROLE = "substratus.ai/role"
SELECTOR = f"{MANAGED_BY}={MANAGER}"
MAX_NAME = 63

JOB_SUFFIX = {"build": "bld", "dataset": "data", "model": "model"}
SERVICE_ACCOUNTS = {
    "build": "container-builder",
    "dataset": "data-loader",
    "model": "modeller",
    "modelserver": "model-server",
    "notebook": "notebook",
}


def label_address(address: str) -> str:
    """``kind.name`` of an address (its namespace part dropped)."""
    return address.rsplit("/", 1)[-1]


def labels(address: str, digest: str, role: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        ADDRESS: label_address(address),
        DIGEST: short_digest(digest),
        ROLE: role,
    }


def object_annotations(address: str, digest: str) -> dict[str, str]:
    return {ADDRESS: address, DIGEST: digest}


def address_selector(address: str) -> str:
    return f"{SELECTOR},{ADDRESS}={label_address(address)}"


def run_tag(version: str) -> str:
    """The short tag of a version in object names: ``{digest[:8]}-{token}``, or the first 8
    digest characters of a version made before versions had tokens."""
    digest, _, token = version.partition("-")
    return f"{digest[:8]}-{token}" if token else digest[:8]


def job_name(kind: str, name: str, version: str) -> str:
    suffix = f"-{JOB_SUFFIX[kind]}-{run_tag(version)}"
    return name[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def params_name(owner: str) -> str:
    return f"{owner}-params"


def server_name(name: str) -> str:
    return f"{name}-server"


def notebook_name(name: str) -> str:
    return f"{name}-notebook"


def token_name(name: str) -> str:
    return f"{name}-notebook-token"
