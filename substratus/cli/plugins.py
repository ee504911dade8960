"""The CLI loads no optional code of other packages that it does not use: no pydantic plugins
(and not the loader that looks for them), and not the Kubernetes client's client-side validation.

pydantic finds its plugins in the entry points of every installed distribution
(``pydantic.plugin._loader``). The CLI turns that off (``PYDANTIC_DISABLE_PLUGINS=__all__``,
unless the user set the variable), so no other package's code runs inside a command. With
plugins off, the loader still costs ``importlib.metadata`` (and ``email``, ``zipfile``…) at the
first model pydantic builds: 13–21 ms of a ``validate`` that takes 0.2 s.

``disable()`` puts ``NoPlugins`` in the loader's place while the variable turns every plugin off
(the values pydantic itself reads that way). Its ``get_plugins()`` answers what pydantic's
answers then: none. Any other name pydantic may ask of its loader is taken from the real module,
imported at that moment, so a pydantic whose loader grew new names still works, only without the
saving. Jobs never see the variable: their environment is an allowlist
(``runtimes.contract.host_env``).

``import kubernetes`` imports ``kubernetes.dynamic``, which imports ``kubernetes_validate`` when
it is installed, for ``DynamicClient.validate`` — a method substratus never calls. That package's
``jsonschema`` builds a URI grammar (``rfc3987_syntax``) at import: about 1.1 s of every command
that talks to a cluster. ``disable()`` marks it absent in this process (``sys.modules[name] =
None``: importing it raises ``ModuleNotFoundError``, which ``kubernetes.dynamic`` expects), unless
something imported it already.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any, cast

LOADER = "pydantic.plugin._loader"
VARIABLE = "PYDANTIC_DISABLE_PLUGINS"
ALL_OFF = ("__all__", "1", "true")  # the values for which pydantic loads no plugin at all
UNUSED = ("kubernetes_validate",)  # optional imports of our dependencies that we never use


class NoPlugins(types.ModuleType):
    """Stands in ``sys.modules`` for pydantic's plugin loader while every plugin is off."""

    def get_plugins(self) -> tuple[()]:
        """No plugins (pydantic's loader answers the same while the variable is set)."""
        return ()

    def __getattr__(self, name: str) -> Any:
        """Anything else: the real loader's, which then replaces this stand-in."""
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def disable() -> None:
    """Turn pydantic plugins off for this process (unless the user chose otherwise) and, when
    they are all off, skip the loader's imports; mark ``UNUSED`` absent. Call before pydantic
    builds a model and before ``kubernetes`` is imported."""
    os.environ.setdefault(VARIABLE, "__all__")
    if os.environ[VARIABLE] in ALL_OFF and LOADER not in sys.modules:
        sys.modules[LOADER] = NoPlugins(LOADER)
    modules = cast(dict[str, types.ModuleType | None], sys.modules)
    for name in UNUSED:
        modules.setdefault(name, None)
