"""The GCS state backend: ``gs://bucket/prefix`` (DESIGN §7), shared by a team and its CI.

Beyond Terraform's GCS backend: every state write is a compare-and-swap on the generation read;
a write costs the size of its change (a journal of small objects, compacted), not a rewrite of
the whole state; the lock has a lease its holder renews, and an expired lock left by a crashed
run is taken over safely. Modules:

- ``layout``: the URL, object names, version tokens and settings (no I/O);
- ``client``: the only module that imports the Google Cloud SDK (retries, error mapping);
- ``errors``: the diagnostics a user can act on (missing bucket, permissions, credentials);
- ``reading`` and ``store``: the state (base + journal) with compare-and-swap; ``recovery``:
  ``state recover``, rebuilding a damaged state from its journal;
- ``lock``: the lock (generation ids, lease, renewal, takeover);
- ``backend``: ``GcsBackend``, the ``Backend`` tying them together.
"""

from __future__ import annotations

from substratus.state.gcs.backend import GcsBackend
from substratus.state.gcs.layout import Location, parse_url

__all__ = ["GcsBackend", "Location", "parse_url"]
