"""Runtimes: how resources run (DESIGN §2, §8).

Each sub-package implements ``substratus.engine.runtime.Runtime`` and imports engine types only;
none of them touches the state, the graph or the CLI. ``local`` runs workloads as processes on
this machine; ``kubernetes`` (when present) is the only place that imports the ``kubernetes`` SDK.
The composition root picks and constructs one; the engine never imports this package.
"""
