"""Shared test configuration: hypothesis profiles, and the browser tests marked and kept to one worker.

`ci` (the default) is derandomized so main stays reproducible; `fuzz` explores much more, for a developer's
long run: `HYPOTHESIS_PROFILE=fuzz pytest tests/wire`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", deadline=None, max_examples=20_000, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Test modules that drive headless Chromium (each page a browser of its own). Several of them at once on two cores
#: starve each other's pages (a call page's latency passed a second in CI), and so does the rest of the suite beside
#: them (a three-page call fell 13 s behind in CI while the other worker ran relay tests). So they are marked
#: `browser`: `make test` runs them after the rest, one after another (`pytest -m browser`). Under a plain
#: `pytest -n`, they share one xdist group (`--dist loadgroup` runs them one after another on one worker).
BROWSER_MODULES = frozenset(
    {"tests.web.test_browser", "tests.web.test_call", "tests.web.test_stage", "tests.bench.test_call_part"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.xdist_group("browser"))
