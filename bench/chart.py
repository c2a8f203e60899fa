"""Draw bench/results/latest.png from latest.json: `python bench/chart.py IN.json OUT.png`.

Runs in whatever Python has matplotlib (bench/.venv-chart by default), so it uses only the
standard library besides matplotlib and reads the aggregated cells written by run.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "backend": "#9e9e9e", "envoy": "#4c72b0", "noop": "#8172b3", "noop3": "#c5b0d5",
    "gateway": "#2ca02c",
    "gateway-w2": "#98df8a", "litellm": "#d62728", "litellm-w2": "#ff9896",
}


def _bars(ax, cells, shapes, targets, field, title, ylabel):  # type: ignore[no-untyped-def]
    width = 0.8 / max(1, len(targets))
    for i, target in enumerate(targets):
        xs, ys = [], []
        for j, shape in enumerate(shapes):
            value = cells.get(shape, {}).get(target, {}).get(field)
            if value:
                xs.append(j + (i - (len(targets) - 1) / 2) * width)
                ys.append(value)
        ax.bar(xs, ys, width, label=target, color=COLORS.get(target))
    ax.set_xticks(range(len(shapes)))
    ax.set_xticklabels([s.replace("-", "\n", 1).replace("-", " ") for s in shapes], fontsize=8)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(axis="y", which="both", alpha=0.3)


def main(src: str, dst: str) -> None:
    data = json.loads(Path(src).read_text())
    cells, shapes = data["cells"], data["shapes"]
    targets = [t["name"] for t in data["targets"] if t.get("available")]
    panels = [
        ("rps", [s for s in shapes if s.startswith("json")], "non-streaming: requests/s", "req/s"),
        ("rps", [s for s in shapes if s.startswith("sse")], "streaming (canned): streams/s", "streams/s"),
        ("p50_ms", [s for s in shapes if s.startswith("json")], "non-streaming: p50 latency", "ms"),
        ("ttft_p50_ms", [s for s in shapes if s.startswith("paced")],
         "paced streaming: p50 time to first token", "ms"),
    ]
    panels = [p for p in panels if p[1]]
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(15, 4.2 * rows), squeeze=False)
    for ax, (field, keys, title, ylabel) in zip(axes.flat, panels, strict=False):
        _bars(ax, cells, keys, targets, field, title, ylabel)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    facts = data["meta"]["facts"]
    fig.suptitle(f"extproc bench {data['meta']['date']} — {facts.get('machine', '')} "
                 "(log scales)", fontsize=11)
    fig.legend(handles, labels, loc="upper center", ncol=len(targets), fontsize=9,
               bbox_to_anchor=(0.5, 0.96), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
