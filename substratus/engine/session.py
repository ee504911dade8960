"""Notebook sessions: how the ``notebook`` command reaches a running notebook (DESIGN §9).

A runtime that supports the dev loop also implements ``NotebookAccess``:
``notebook_session(namespace, name, outputs, local_port)`` takes the outputs ``apply`` recorded
for the notebook and returns a ``NotebookSession``:

- ``url``: where the user's browser goes, with the token (``http://127.0.0.1:PORT/?token=…``;
  on a cluster a port-forward from ``local_port``, or the next free port, to the pod's 8888);
- ``ready()``: whether Jupyter answers at ``url`` now;
- ``changes()``: the files changed in the notebook as watcher events (``substratus.notebook``
  ``watcher`` lines as dicts), or ``None`` when there is nothing to sync (the local runtime
  runs the notebook in the directory itself); the iterator ends when the session closes;
- ``read_file(path)``: a file's bytes, ``path`` relative to the notebook's ``/content``;
- ``close()``: stops forwarding and watching. Never touches the state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable


class NotebookSession(Protocol):
    url: str

    def ready(self) -> bool: ...

    def changes(self) -> Iterator[dict[str, Any]] | None: ...

    def read_file(self, path: str) -> bytes: ...

    def close(self) -> None: ...


@runtime_checkable
class NotebookAccess(Protocol):
    def notebook_session(
        self, namespace: str, name: str, outputs: Mapping[str, Any], local_port: int
    ) -> NotebookSession: ...
