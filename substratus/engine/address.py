"""Resource addresses: ``[namespace/]kind.name``.

The namespace part is written only when it differs from the project's default namespace, so an
``Address`` stores ``namespace=None`` for "the default". Kinds are lower-case. ``build`` addresses
name the implicit image builds of git/local containers.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import NamedTuple

from substratus.engine.kinds import Kind

KINDS = tuple(k.value for k in Kind)  # build, dataset, model, modelserver, notebook

# Kinds as written in configuration documents -> address kind.
KIND_ALIASES = {
    "Dataset": "dataset",
    "Model": "model",
    "ModelServer": "modelserver",
    "Server": "modelserver",
    "Notebook": "notebook",
}

DISPLAY_KIND = {
    "build": "Build",
    "dataset": "Dataset",
    "model": "Model",
    "modelserver": "ModelServer",
    "notebook": "Notebook",
}

NAME_RE = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")  # \Z: "$" would accept a final "\n"
NAME_MAX = 50
_ADDRESS_RE = re.compile(
    r"^(?:(?P<ns>[a-z0-9][-a-z0-9]*)/)?(?P<kind>[a-z]+)\.(?P<name>[-a-z0-9]+)$"
)


def name_problem(name: str, max_len: int = NAME_MAX) -> str | None:
    """Why ``name`` is not a valid resource name (DNS-1123 label, ``max_len`` chars), or None."""
    if not name:
        return "the name is empty"
    if len(name) > max_len:
        return f"{name!r} is {len(name)} characters long; names are at most {max_len}"
    if not NAME_RE.match(name):
        return (
            f"{name!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


class Address(NamedTuple):
    """An immutable address, ordered by (kind, name, namespace). A named tuple, so that hashing
    and comparing one — addresses key every graph and map — costs no Python call; its hash is
    that of the tuple of its fields, as when it was a frozen dataclass (so is every set's
    order)."""

    kind: str
    name: str
    namespace: str | None = None  # None = the project's default namespace

    def __str__(self) -> str:
        base = f"{self.kind}.{self.name}"
        return f"{self.namespace}/{base}" if self.namespace else base

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``[ns/]kind.name``; raises ``ValueError`` with a helpful message."""
        m = _ADDRESS_RE.match(text.strip())
        if not m or m.group("kind") not in KINDS:
            raise ValueError(
                f"{text!r} is not a resource address; write [namespace/]kind.name with kind one "
                f"of {', '.join(KINDS)} (for example model.falcon-7b)"
            )
        return cls(m.group("kind"), m.group("name"), m.group("ns"))

    def effective_namespace(self, default: str) -> str:
        return self.namespace or default


def closest(text: str, candidates: Iterable[str]) -> list[str]:
    """The addresses among ``candidates`` that ``text`` most likely meant, best first (none when
    nothing is close): those whose name is ``text`` (a bare name, ``tuned-ngram``, meaning
    ``model.tuned-ngram`` or ``modelserver.tuned-ngram``), else the closest spelling."""
    pool = sorted(set(candidates))
    wanted = text.strip()
    named = [c for c in pool if c.rpartition("/")[2].partition(".")[2] == wanted]
    return named[:3] or difflib.get_close_matches(wanted, pool, n=1, cutoff=0.6)


def did_you_mean(text: str, candidates: Iterable[str]) -> str:
    """`` Did you mean model.x?`` (with its leading space) for ``closest``, else ``""``."""
    found = closest(text, candidates)
    return f" Did you mean {' or '.join(found)}?" if found else ""
