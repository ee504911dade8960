"""The local runtime: resources as processes and directories on this machine (DESIGN §8).

``LocalRuntime(workdir=Path(".substratus"), artifacts_url="file:///abs/dir")`` implements
``substratus.engine.runtime.Runtime``. The export is lazy so that the job supervisor
(``python -m substratus.runtimes.local.supervise``), which lives in this package, starts without
importing the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from substratus.runtimes.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]


def __getattr__(name: str) -> Any:
    if name == "LocalRuntime":
        from substratus.runtimes.local.runtime import LocalRuntime

        return LocalRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
