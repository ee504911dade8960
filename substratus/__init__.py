"""substratus: a Terraform-style plan/apply engine for machine-learning resources.

The package has three parts (see ARCHITECTURE in the README):

- ``substratus.engine``: the pure core (config, graph, lineage, planner, plan, apply, render);
- ``substratus.runtimes``: runtimes that run resources (``local`` subprocesses, ``kubernetes``);
- ``substratus.state``: backends that keep the state (``file://``, ``gs://``).

``substratus.cli`` is the composition root that wires them together.
"""

__version__ = "0.1.0"
