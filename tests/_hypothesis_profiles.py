"""Hypothesis profiles for the property-based tests, chosen by $HYPOTHESIS_PROFILE.

- "ci" (the default): few examples per test, no deadline (a first Numba call compiles,
  a busy CI core stalls), derandomized (the same examples on every run, so a failure
  reproduces from the log) and no example database written next to the sources.
- "long": a soak of many random examples, for a nightly job or before a release:
  ``HYPOTHESIS_PROFILE=long python -m pytest tests/test_properties.py -p no:cacheprovider``
- "dev": the hypothesis defaults with no deadline, random and with the database.

Imported by the tests that use hypothesis (tests/test_properties.py,
tests/test_fuzz_files.py), so that loading a profile does not depend on editing
tests/conftest.py.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile("dev", deadline=None, print_blob=True,
                          suppress_health_check=_SLOW_IS_FINE)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci").strip() or "ci"
settings.load_profile(PROFILE)
