"""``substratus schema``: print the JSON Schema of a configuration document (for editors).

The schema is generated from the spec models (``substratus.engine.schema``), imported only when
the command runs; ``schema/substratus.json`` is its checked-in copy.
"""

from __future__ import annotations

import sys


def schema() -> None:
    """Print the JSON Schema of a configuration document (every kind, both document forms), for
    editors: `substratus schema > schema/substratus.json`."""
    from substratus.engine.schema import schema_text

    sys.stdout.write(schema_text())
