from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLAUDE_CODE_FIXTURES = SHARED / "fixtures" / "claude-code"


@pytest.fixture
def claude_code_fixture_dir() -> Path:
    if not CLAUDE_CODE_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {CLAUDE_CODE_FIXTURES}")
    return CLAUDE_CODE_FIXTURES
