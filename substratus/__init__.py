"""substratus: a Terraform-style plan/apply engine for machine-learning resources.

The package is layered; each layer imports only the layers below it (import-linter's layers
contract in ``pyproject.toml`` enforces it, and ``tests/test_architecture.py`` forbids import
cycles and functions over 60 lines):

- ``substratus.cli``: the typer commands, one module per noun (``plan``, ``apply``/``destroy``,
  ``state``, ``workspace``, ``notebook``, ``graph``, ``comment``, ``show``, ``output``),
  registered in ``cli.app``; ``cli.options.RunOptions`` is the one frozen options object a
  command builds from its flags and passes down.
- ``substratus.ci``: the GitHub client, the sticky pull-request comment and reviewed plans.
- ``substratus.wiring``: settings (flags, environment, ``kind: Project``) → a state backend and
  a runtime; the only module that knows every concrete one.
- ``substratus.runtimes`` (``local``, ``kubernetes``, the artifact stores) and
  ``substratus.state`` (``file://`` and ``gs://`` backends): independent of each other.
- ``substratus.gcs`` (the one Google Cloud Storage client set-up) and ``substratus.notebook``
  (file sync for notebooks): shared by the layer above.
- ``substratus.engine``: the pure core — configuration, each kind's rules (``kinds``), digests,
  the planner and the typed plan, the walker, renderers, and the protocols (``runtime``,
  ``backend``, ``failure``, ``backoff``) the layers above implement. It imports no cloud SDK.

``CONTRIBUTING.md`` says where each kind of change goes.
"""

__version__ = "0.1.0"
