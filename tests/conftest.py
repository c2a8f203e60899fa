from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles. "ci" (the default) is reproducible and bounded: a fixed seed
# (derandomize) and a fixed example budget, so the suite takes the same time every run and a
# failure reproduces anywhere. "fuzz" is for hunting locally: random seeds, 50x the budget
# (HYPOTHESIS_PROFILE=fuzz pytest tests/fuzz). Tests with their own `settings(...)` keep it.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    parent=settings.get_profile("ci"),
    derandomize=False,
    max_examples=3000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLAUDE_CODE_FIXTURES = SHARED / "fixtures" / "claude-code"


@pytest.fixture
def claude_code_fixture_dir() -> Path:
    if not CLAUDE_CODE_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {CLAUDE_CODE_FIXTURES}")
    return CLAUDE_CODE_FIXTURES
