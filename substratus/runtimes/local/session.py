"""The local runtime's notebook session: the notebook already listens on a local port, in the
user's directory, so there is nothing to forward and nothing to sync (see ``engine.session``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from substratus.engine.failure import Failure
from substratus.runtimes.local.process import http_status


class LocalNotebookSession:
    def __init__(self, outputs: Mapping[str, Any]) -> None:
        url = outputs.get("url")
        if not url:
            raise Failure("the notebook is not running", "apply it without suspend: true")
        self.url = str(url)
        self.port = int(outputs["port"])

    def ready(self) -> bool:
        status = http_status(self.port)
        return status is not None and status < 500

    def changes(self) -> Iterator[dict[str, Any]] | None:
        return None

    def read_file(self, path: str) -> bytes:
        raise Failure("a local notebook works in its own directory: there is nothing to read")

    def close(self) -> None:
        pass
