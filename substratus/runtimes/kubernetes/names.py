"""Names and labels of the Kubernetes objects substratus creates (DESIGN §8).

Every object carries ``app.kubernetes.io/managed-by: substratus``, the label
``substratus.ai/address`` (``kind.name``: label values cannot hold the ``/`` of a namespaced
address; the namespace is the object's own), ``substratus.ai/digest`` (the first 16 hex digits
of the digest it was applied at) and the identity of the state that made it (``Owner``): the label
``substratus.ai/lineage`` (the state's lineage, a UUID) and the label ``substratus.ai/workspace``
(the workspace as a label value, ``label_value``; the annotation of the same key holds the name
itself). The object's own metadata (not a pod template's) also carries ``substratus.ai/version``,
the run that last applied it. The full address and digest are annotations. A server's pod
template carries ``substratus.ai/restart`` once a replacement was requested: the version of that
run, so the Deployment rolls even at the same digest. A Job's pod template carries its
``params.json`` as ``substratus.ai/params`` unless the params Secret holds it
(``manifests.params_inline``). ServiceAccounts are shared by every state
of a namespace and carry only the managed-by label (``runtime``).

Names are deterministic, so an interrupted apply's objects are found again. Objects that live
across runs are named after the resource's *stem*: its name in the ``default`` workspace, else
``{name}-{workspace}`` (lower-cased, other characters as ``-``; with a short hash when that
changed the workspace name or the stem would be too long), so two workspaces of one project keep
their objects apart on one namespace:

- a Job per run (one version, ``RunRequest.version``): ``{name}-{bld|data|model}-{tag}`` with
  ``tag`` the version's digest prefix and token (``run_tag``; ≤ 63 characters, the limit of
  the ``job-name`` label its pods get; ≤ 58 for a run on more than one node, whose pods are
  named ``{job}-{index}``), its params Secret ``{job}-params`` (when its params need one) —
  unique per run, whatever the workspace or state — and, on more than one node, its headless
  Service (``indexed``);
- a ModelServer: Deployment and Service ``{stem}-server``, params Secret ``{stem}-server-params``;
- a Notebook: Pod and Service ``{stem}-notebook``, params Secret ``{stem}-notebook-params``,
  token Secret ``{stem}-notebook-token``.

``params_name`` is also the name of the params ConfigMap versions of substratus before params
moved to Secrets made (deleted with the Job; a server's or notebook's by ``cleanup``).

Pure functions; no I/O.
"""

from __future__ import annotations

import hashlib
import re

from substratus.engine.runtime import Owner
from substratus.runtimes.local.files import short_digest

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "substratus"  # label value and server-side apply field manager
ADDRESS = "substratus.ai/address"
DIGEST = "substratus.ai/digest"
ROLE = "substratus.ai/role"
LINEAGE = "substratus.ai/lineage"
WORKSPACE = "substratus.ai/workspace"
VERSION = "substratus.ai/version"
RESTART = "substratus.ai/restart"
PARAMS = "substratus.ai/params"  # a Job pod's params.json (manifests.params_inline)
SELECTOR = f"{MANAGED_BY}={MANAGER}"
MAX_NAME = 63
DEFAULT_WORKSPACE = "default"
MAX_STEM = MAX_NAME - len("-notebook")  # a Service name is a DNS label of ≤ 63 characters
INDEX_ROOM = len("-1023")  # a pod of an Indexed Job is {job}-{index}; nodes ≤ 1024

JOB_SUFFIX = {"build": "bld", "dataset": "data", "model": "model"}
SERVICE_ACCOUNTS = {
    "build": "container-builder",
    "dataset": "data-loader",
    "model": "modeller",
    "modelserver": "model-server",
    "notebook": "notebook",
}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def label_value(text: str) -> str:
    """``text`` when it is a valid label value, else a valid one made from it plus a hash."""
    if len(text) <= MAX_NAME and _LABEL_VALUE.match(text):
        return text
    safe = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: MAX_NAME - 9].strip("-_.")
    return f"{safe}-{_hash(text, 8)}" if safe else _hash(text, 8)


def label_address(address: str) -> str:
    """``kind.name`` of an address (its namespace part dropped)."""
    return address.rsplit("/", 1)[-1]


def identity_labels(owner: Owner) -> dict[str, str]:
    """The labels that say which state made an object (no lineage before the state has one)."""
    out = {WORKSPACE: label_value(owner.workspace)}
    if owner.lineage:
        out[LINEAGE] = owner.lineage
    return out


def labels(address: str, digest: str, role: str, owner: Owner) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        ADDRESS: label_address(address),
        DIGEST: short_digest(digest),
        ROLE: role,
        **identity_labels(owner),
    }


def object_annotations(address: str, digest: str, owner: Owner) -> dict[str, str]:
    return {ADDRESS: address, DIGEST: digest, WORKSPACE: owner.workspace}


def address_selector(address: str) -> str:
    """Every substratus object of an address, whichever state made it."""
    return f"{SELECTOR},{ADDRESS}={label_address(address)}"


def owner_selector(address: str, owner: Owner) -> str:
    """The objects of an address that ``owner``'s state made."""
    identity = ",".join(f"{k}={v}" for k, v in sorted(identity_labels(owner).items()))
    return f"{address_selector(address)},{identity}"


def stem(name: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    """What a resource's long-lived objects are named after in ``workspace`` (see above)."""
    if workspace == DEFAULT_WORKSPACE:
        return name
    slug = re.sub(r"[^a-z0-9-]", "-", workspace.lower()).strip("-")
    candidate = f"{name}-{slug}"
    if slug == workspace and len(candidate) <= MAX_STEM:
        return candidate
    return f"{candidate[: MAX_STEM - 7].rstrip('-')}-{_hash(f'{name}/{workspace}', 6)}"


def run_tag(version: str) -> str:
    """The short tag of a version in object names: ``{digest[:8]}-{token}``, or the first 8
    digest characters of a version made before versions had tokens."""
    digest, _, token = version.partition("-")
    return f"{digest[:8]}-{token}" if token else digest[:8]


def job_name(kind: str, name: str, version: str, nodes: int = 1) -> str:
    """The Job of a run; on more than one node (an Indexed Job, ``indexed``) ``INDEX_ROOM``
    characters shorter, so that its pods' hostnames ``{job}-{index}`` are DNS labels too."""
    suffix = f"-{JOB_SUFFIX[kind]}-{run_tag(version)}"
    room = MAX_NAME - (INDEX_ROOM if nodes > 1 else 0)
    return name[: room - len(suffix)].rstrip("-") + suffix


def job_names(kind: str, name: str, version: str) -> set[str]:
    """Every name the Job of a run may have (on one node or on more)."""
    return {job_name(kind, name, version), job_name(kind, name, version, nodes=2)}


def params_name(owner: str) -> str:
    return f"{owner}-params"


def server_name(name: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    return f"{stem(name, workspace)}-server"


def notebook_name(name: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    return f"{stem(name, workspace)}-notebook"


def token_name(name: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    return f"{stem(name, workspace)}-notebook-token"
