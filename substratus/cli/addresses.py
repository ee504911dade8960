"""Resource addresses on the command line: one parser and one message for a bad address
(``parse``, ``missing``), the addresses that exist (``configured``, ``recorded``) and the shell
completion of addresses (``complete``).

A malformed address is refused everywhere as ``Invalid address 'X'``; an address that exists
nowhere as the command's "No resource …" error; both name the closest address that exists
("Did you mean model.tuned-ngram?", ``engine.address.did_you_mean``).

Completion reads the configuration cheaply (the documents' ``kind`` and ``name``, no
validation) and the state without taking its lock; it never fails, it completes less. This
module imports nothing heavy until one of its functions runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from substratus.engine.diagnostic import DiagnosticError, fail

if TYPE_CHECKING:
    from substratus.engine.address import Address


def parse(text: str, known: Callable[[], Iterable[str]] = tuple) -> Address:
    """``text`` as an address; a malformed one is refused with the message every command gives,
    naming the closest of the ``known`` addresses (asked for only then)."""
    from substratus.engine.address import Address, did_you_mean

    try:
        return Address.parse(text)
    except ValueError as exc:
        raise fail(f"Invalid address {text!r}", f"{exc}.{did_you_mean(text, known())}") from exc


def missing(address: str, where: str, known: Iterable[str], hint: str) -> DiagnosticError:
    """The error for a well-formed ``address`` that is not in ``where`` (``the state``),
    followed by ``hint`` and the closest of the ``known`` addresses."""
    from substratus.engine.address import did_you_mean

    return fail(f"No resource {address} in {where}", hint + did_you_mean(address, known))


def configured(paths: list[str]) -> tuple[list[str], bool]:
    """The addresses the configuration at ``paths`` declares (read cheaply: each document's
    ``kind`` and ``name``, nothing validated), and whether it has a ``kind: Project``."""
    from substratus.engine.address import KIND_ALIASES
    from substratus.engine.config import find_files
    from substratus.engine.yamlsource import load_documents
    from substratus.wiring import with_notebooks

    files, _ = find_files(with_notebooks(paths))
    found: list[str] = []
    project = False
    for f in files:
        docs, _ = load_documents(f.read_text(encoding="utf-8", errors="replace"), str(f))
        for doc in docs:
            data = doc.data if isinstance(doc.data, dict) else {}
            project = project or data.get("kind") == "Project"
            meta = data.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            name = data.get("name") or meta.get("name")
            kind = KIND_ALIASES.get(str(data.get("kind")))
            if kind and isinstance(name, str):
                found.append(f"{kind}.{name}")
    return found, project


def recorded(params: Mapping[str, Any], project: bool = True) -> list[str]:
    """The addresses the state of a command's ``params`` (``files``, ``state``, ``workspace``)
    records, read without the lock (``project``: the configuration may choose the state, so it
    is loaded to find it, as ``cli.prepare.state_settings`` does)."""
    from substratus.engine.config import load_config
    from substratus.wiring import Overrides, make_backend, resolve

    paths = list(params.get("files") or ["."])
    given = Overrides(
        state=params.get("state"), workspace=str(params.get("workspace") or "default")
    )
    config = None
    if project:
        with contextlib.suppress(DiagnosticError):
            config = load_config(paths)
    current, _ = make_backend(resolve(config, paths, given)).read()
    return list(current.resources) if current is not None else []


def complete(ctx: Any, incomplete: str) -> list[str]:
    """Shell completion of an address: those of the configuration and the state that start
    with ``incomplete``. Anything that goes wrong completes nothing rather than failing."""
    params = dict(getattr(ctx, "params", None) or {})
    found: list[str] = []
    project = True
    with contextlib.suppress(Exception):  # a broken configuration: the state's still
        found, project = configured(list(params.get("files") or ["."]))
    with contextlib.suppress(Exception):  # no state: nothing from it
        found += recorded(params, project)
    return sorted(a for a in set(found) if a.startswith(incomplete))
