"""The performance targets of the issue, evaluated on one run (a report, never a test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Table = dict[tuple[str, str], Any]


def of_mode(shapes: list[str], mode: str, size: str | None = None) -> list[str]:
    return [s for s in shapes if s.startswith(mode + "-") and (size is None or f"-{size}-" in s)]


def ratios(table: Table, shapes: list[str], a: str, b: str,
           field: str = "rps") -> list[tuple[str, float]]:
    """(shape, a's `field` / b's) where both have it."""
    out = []
    for shape in shapes:
        ca, cb = table.get((shape, a)), table.get((shape, b))
        va = getattr(ca, field, None) if ca is not None else None
        vb = getattr(cb, field, None) if cb is not None else None
        if va is not None and vb:
            out.append((shape, va / vb))
    return out


def added(table: Table, shapes: list[str], field: str, a: str, b: str) -> list[tuple[str, float]]:
    out = []
    for shape in shapes:
        ca, cb = table.get((shape, a)), table.get((shape, b))
        va = getattr(ca, field, None) if ca is not None else None
        vb = getattr(cb, field, None) if cb is not None else None
        if va is not None and vb is not None:
            out.append((shape, va - vb))
    return out


def _label(shape: str) -> str:
    return shape.replace("-", " ")


def _row(goal: str, values: list[tuple[str, float]], fmt: str, ok: Callable[[float], bool],
         worst: Callable[[list[tuple[str, float]]], tuple[str, float]] | None = None) -> list[str]:
    if not values:
        return [goal, "not measured in this run", ""]
    met = sum(ok(v) for _, v in values)
    if worst is not None:  # many shapes: name the worst one
        shape, value = worst(values)
        shown = f"worst {_label(shape)}: {fmt.format(value)} ({met}/{len(values)} shapes meet it)"
    else:
        shown = ", ".join(f"{_label(s)} {fmt.format(v)}" for s, v in values)
    return [goal, shown, "yes" if met == len(values) else "**no**"]


def _lowest(values: list[tuple[str, float]]) -> tuple[str, float]:
    return min(values, key=lambda sv: sv[1])


def _highest(values: list[tuple[str, float]]) -> tuple[str, float]:
    return max(values, key=lambda sv: sv[1])


def evaluate(table: Table, targets: list[dict[str, Any]], shapes: list[str]) -> list[list[str]]:
    """Rows of (goal, measured, met?) for the gateway against the floors and LiteLLM."""
    rows = [
        _row("small non-streaming req/s >= 0.85x no-op ext_proc",
             ratios(table, of_mode(shapes, "json", "1k"), "gateway", "noop"), "{:.2f}x",
             lambda v: v >= 0.85),
        _row("80 KB non-streaming req/s >= 0.7x no-op ext_proc",
             ratios(table, of_mode(shapes, "json", "80k"), "gateway", "noop"), "{:.2f}x",
             lambda v: v >= 0.7),
        _row("added p50 over plain Envoy at c1, 1 KB <= 2 ms",
             added(table, [s for s in of_mode(shapes, "json", "1k") if s.endswith("-c1")],
                    "p50_ms", "gateway", "envoy"), "{:+.2f} ms", lambda v: v <= 2),
        _row("added p50 over plain Envoy at c1, 80 KB <= 3 ms",
             added(table, [s for s in of_mode(shapes, "json", "80k") if s.endswith("-c1")],
                    "p50_ms", "gateway", "envoy"), "{:+.2f} ms", lambda v: v <= 3),
        _row("added time to first token over plain Envoy at c8 <= 2 ms",
             added(table, [s for s in of_mode(shapes, "paced") if s.endswith("-c8")],
                    "ttft_p50_ms", "gateway", "envoy"), "{:+.2f} ms", lambda v: v <= 2),
        # Paced streams last >= 190 ms by construction: their rate says little about the proxy.
        _row(">= 8x LiteLLM's req/s, every json/sse shape",
             ratios(table, [s for s in shapes if not s.startswith("paced")], "gateway", "litellm"), "{:.1f}x", lambda v: v >= 8, _lowest),
        _row("lower p99 than LiteLLM, every shape",
             added(table, shapes, "p99_ms", "gateway", "litellm"), "{:+.1f} ms",
             lambda v: v < 0, _highest),
    ]
    for info in targets:
        if not (info.get("available") and info["name"].startswith("gateway")):
            continue
        workers = max(1, info["procs"]["app"])
        per_worker = info.get("rss_end", info["rss_start"])["app"] / workers
        rows.append(_row(f"`{info['name']}` ext_proc RSS per process <= 100 MB",
                         [("after load", per_worker)], "{:.1f} MB", lambda v: v <= 100))
        rows.append(_row(f"`{info['name']}` start-up < 2 s",
                         [("measured", info["startup_s"])], "{:.2f} s", lambda v: v < 2))
    return rows
