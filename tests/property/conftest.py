"""Hypothesis profiles for the property tests.

``dev`` (the default) explores randomly and keeps the example database; ``ci`` (used when the
``CI`` environment variable is set, or with ``--hypothesis-profile=ci``) is derandomized and
database-less, so a CI run is reproducible and writes nothing. Both keep the suite fast: the
engine round trips (plan → apply → plan) take a few milliseconds, not a deadline's worth.
``thorough`` (``SUBSTRATUS_HYPOTHESIS_PROFILE=thorough``) runs ten times as many examples, for
hunting bugs locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

settings.register_profile("dev", _COMMON)
settings.register_profile("ci", _COMMON, derandomize=True, database=None, print_blob=True)
settings.register_profile("thorough", _COMMON, max_examples=500)
settings.load_profile(
    os.environ.get("SUBSTRATUS_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
