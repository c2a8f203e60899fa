"""The README's bench results are one run's saved results, numbers and summary alike."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import readme  # noqa: E402  (bench/ is scripts, not a package)


@pytest.fixture(scope="module")
def saved() -> tuple[str, dict[str, Any]]:
    return readme.load(REPO / "bench" / "results")


def test_the_readme_shows_the_saved_run_exactly(saved: tuple[str, dict[str, Any]]) -> None:
    shown = readme.current_block((REPO / "README.md").read_text())
    assert shown == readme.block(*saved)
    assert saved[1]["meta"]["date"] in shown  # the same run as the JSON the chart is drawn from


def test_the_summary_is_computed_from_the_cells(saved: tuple[str, dict[str, Any]]) -> None:
    _, results = saved
    changed = copy.deepcopy(results)
    for shape in ("json-1k-c1", "json-1k-c8", "json-1k-c32"):
        cells = changed["cells"][shape]
        cells["gateway"]["rps"] = cells["noop"]["rps"] * 0.5
    assert "small non-streaming requests at 0.50x" in readme.summary(changed)
    assert "small non-streaming requests at 0.50x" not in readme.summary(results)


def test_rewriting_the_block_leaves_the_rest_of_the_readme_alone() -> None:
    text = f"intro\n{readme.START}\nold numbers\n{readme.END}\n\noutro\n"
    rewritten = readme.with_block(text, "new numbers")
    assert rewritten == f"intro\n{readme.START}\nnew numbers\n{readme.END}\n\noutro\n"
    assert readme.with_block(rewritten, "new numbers") == rewritten
    assert readme.current_block(rewritten) == "new numbers"
    with pytest.raises(ValueError, match="no"):
        readme.with_block("no markers here", "x")
