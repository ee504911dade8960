"""The pure core of substratus.

It loads and validates configuration, builds the dependency graph, computes digests and plans, and
walks a plan to apply it. It talks to the outside world only through two protocols it owns:
``engine.runtime.Runtime`` (how resources run) and ``engine.backend.Backend`` (where the state
lives). It imports no cloud SDK and nothing from ``substratus.runtimes`` or ``substratus.state``.
"""
