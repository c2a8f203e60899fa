"""The README's "Latest results" block, made from the saved results of a bench run.

`python bench/run.py` rewrites the block after a default full run; `python bench/readme.py`
makes it again from bench/results/latest.{md,json}. The tables are copied from the report,
and the "where the gateway stands" summary is computed from the same cells, so no number in
the README is written by hand (tests/test_bench_readme.py checks that it matches the results).
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import goals
import orjson

BENCH = Path(__file__).resolve().parent
README = BENCH.parent / "README.md"
RESULTS = BENCH / "results"
START = "<!-- bench:latest:start (python bench/run.py writes this block) -->"
END = "<!-- bench:latest:end -->"

# (heading in the README, section of latest.md copied under it)
_SECTIONS = (
    ("**Goals of the performance issue, measured on this run** (never asserted in tests):",
     "Goals of the performance issue, on this run"),
    ("**Requests per second**", "Requests per second"),
    ("**Time to first byte / first token for paced streams, p50 (p99 TTFT) ms**",
     "Streams: time to first byte / first token, p50 (p99 TTFT) ms"),
    ("**Start-up and memory**", "Targets"),
)


def sections(markdown: str) -> dict[str, str]:
    """latest.md's `## Title` sections by title, and its head (date, facts) under ''."""
    head, *parts = re.split(r"^## ", markdown, flags=re.M)
    found = {"": head}
    for part in parts:
        title, _, body = part.partition("\n")
        found[title.strip()] = body.strip()
    return found


def block(markdown: str, results: dict[str, Any]) -> str:
    """The README block (between the markers) for one run."""
    parts = sections(markdown)
    head = parts[""]
    when = re.search(r"^# extproc bench — (.+)$", head, re.M)
    facts = [line for line in head.splitlines()
             if line.startswith(("- machine:", "- commit:", "- runs:"))]
    out = [f"### Latest results ({when.group(1) if when else '?'}, `python bench/run.py`)",
           "", *facts, "", "![bench chart](bench/results/latest.png)", ""]
    for heading, title in _SECTIONS:
        out += [heading, "", parts[title], ""]
    out += [textwrap.fill(summary(results), width=100, break_on_hyphens=False)]
    return "\n".join(out)


def _table(results: dict[str, Any]) -> goals.Table:
    return {(shape, target): SimpleNamespace(**cell)
            for shape, row in results["cells"].items() for target, cell in row.items()}


def _span(values: list[float], fmt: str) -> str:
    if not values:
        return "not measured"
    low, high = min(values), max(values)
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else (
        f"{fmt.format(low)}-{fmt.format(high)}")


def summary(results: dict[str, Any]) -> str:
    """One paragraph of ranges, every number taken from the run's cells."""
    table, shapes = _table(results), list(results["shapes"])
    unpaced = [s for s in shapes if not s.startswith("paced")]
    c1 = [s for s in unpaced if s.endswith("-c1")]

    def ratios(keys: list[str], a: str, b: str, field: str = "rps") -> list[float]:
        return [v for _, v in goals.ratios(table, keys, a, b, field)]

    def added(keys: list[str], field: str, a: str, b: str) -> list[float]:
        return [v for _, v in goals.added(table, keys, field, a, b)]

    def mode(name: str, size: str | None = None) -> list[str]:
        return goals.of_mode(shapes, name, size)

    p99 = added(shapes, "p99_ms", "gateway", "litellm")
    cpu = ratios(unpaced, "gateway", "litellm", "cpu_ms_per_req")
    first_token = [s for s in mode("paced") if s.endswith("-c8")]
    floor = added(first_token, "ttft_p50_ms", "noop", "envoy")
    ours = added(first_token, "ttft_p50_ms", "gateway", "noop")
    shown = " / ".join(s.split("-")[1] for s in first_token)
    return (
        f"**Where the gateway stands on this run:** "
        f"{_span(ratios(unpaced, 'gateway', 'litellm'), '{:.1f}')}x LiteLLM's requests/s on the "
        f"JSON and SSE shapes, a lower p99 on {sum(v < 0 for v in p99)} of {len(p99)} shapes, "
        f"at {_span([100 * v for v in cpu], '{:.0f}')}% of its CPU per request; p50 at "
        f"concurrency 1 within {_span(added(c1, 'p50_ms', 'gateway', 'noop'), '{:.2f}')} ms of "
        f"the no-op Python ext_proc's. Against the no-op floor's requests/s: small non-streaming "
        f"requests at {_span(ratios(mode('json', '1k'), 'gateway', 'noop'), '{:.2f}')}x, the "
        f"80 KB Claude Code request at {_span(ratios(mode('json', '80k'), 'gateway', 'noop'), '{:.2f}')}x, "
        f"whole SSE streams at {_span(ratios(mode('sse'), 'gateway', 'noop'), '{:.2f}')}x"
        f"{_same_flow(ratios(mode('json'), 'gateway', 'noop3'))}. At "
        f"concurrency 8 the no-op floor alone adds "
        f"{' / '.join(f'{v:.2f}' for v in floor) or '-'} ms to the first token over plain "
        f"Envoy (paced {shown}), and the gateway "
        f"{' / '.join(f'{v:+.2f}' for v in ours) or '-'} ms over the no-op."
    )


def _same_flow(json_ratios: list[float]) -> str:
    """The gateway against a no-op on its own three-message flow: translation cost alone."""
    if not json_ratios:
        return ""
    return (f"; against a no-op on the gateway's own three-message flow, non-streaming "
            f"requests at {_span(json_ratios, '{:.2f}')}x (what translating costs)")


def with_block(readme: str, new_block: str) -> str:
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not (start and end):
        raise ValueError(f"README.md has no {START} ... {END} block")
    return f"{head}{START}\n{new_block}\n{END}{tail}"


def current_block(readme: str) -> str:
    return readme.partition(START)[2].partition(END)[0].strip("\n")


def load(results: Path = RESULTS) -> tuple[str, dict[str, Any]]:
    return ((results / "latest.md").read_text(),
            orjson.loads((results / "latest.json").read_bytes()))


def refresh(readme: Path = README, results: Path = RESULTS) -> None:
    readme.write_text(with_block(readme.read_text(), block(*load(results))))


if __name__ == "__main__":
    refresh()
    print(f"{README.name}: latest results block rewritten from {RESULTS}", file=sys.stderr)
