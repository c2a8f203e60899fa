"""Aggregate runs into cells and render the markdown report."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import goals
from loadgen import MODES, Run
from payloads import TOKENS

RATIOS = (  # (numerator, denominator) shown when both ran
    ("noop", "envoy"),
    ("gateway", "envoy"),
    ("gateway", "noop"),
    ("gateway", "noop3"),
    ("gateway", "litellm"),
)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Cell:
    """One target under one shape, over all repeats."""

    rps: float
    p50_ms: float | None
    p99_ms: float | None
    ttfb_p50_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    cpu_ms_per_req: float | None
    cpu_envoy_ms: float | None
    cpu_app_ms: float | None
    ok: int
    errors: int

    @classmethod
    def of(cls, runs: list[Run]) -> Cell:
        ok = sum(r.ok for r in runs)
        errors = sum(sum(r.errors.values()) for r in runs)
        rps = statistics.median(r.ok / r.seconds for r in runs if r.seconds > 0)
        if runs[0].tool == "wrk":
            p50 = statistics.median(r.p50_ms or 0 for r in runs)
            p99 = statistics.median(r.p99_ms or 0 for r in runs)
        else:
            pooled = [x for r in runs for x in r.latency_ms]
            p50, p99 = _pct(pooled, 50), _pct(pooled, 99)
        ttfb = [x for r in runs for x in r.ttfb_ms]
        ttft = [x for r in runs for x in r.ttft_ms]
        envoy = sum(r.cpu_envoy_s for r in runs) * 1000
        app = sum(r.cpu_app_s for r in runs) * 1000
        return cls(
            rps=rps, p50_ms=p50 if ok else None, p99_ms=p99 if ok else None,
            ttfb_p50_ms=_pct(ttfb, 50), ttft_p50_ms=_pct(ttft, 50), ttft_p99_ms=_pct(ttft, 99),
            cpu_ms_per_req=(envoy + app) / ok if ok else None,
            cpu_envoy_ms=envoy / ok if ok else None, cpu_app_ms=app / ok if ok else None,
            ok=ok, errors=errors,
        )


def cells(runs: list[Run]) -> dict[tuple[str, str], Cell]:
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.shape, run.target), []).append(run)
    return {key: Cell.of(group) for key, group in grouped.items()}


def cells_json(runs: list[Run]) -> dict[str, dict[str, dict[str, Any]]]:
    """{shape: {target: cell fields}} for the chart (which runs without our imports)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (shape, target), cell in cells(runs).items():
        out.setdefault(shape, {})[target] = asdict(cell)
    return out


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _flag(cell: Cell) -> str:
    """Mark cells where some requests failed (numbers then cover the successful ones)."""
    if not cell.errors:
        return ""
    share = cell.errors / max(1, cell.errors + cell.ok)
    return f" ⚠{share:.0%} err"


def _ratio_label(num: str, den: str) -> str:
    return f"{num} ÷ {den}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _shape_label(key: str) -> str:
    mode, size, conc = key.split("-")
    return f"{mode} {size} {conc}"


def render(meta: dict[str, Any], targets: list[dict[str, Any]], runs: list[Run],
           shapes: list[str]) -> str:
    table = cells(runs)
    names = [t["name"] for t in targets if t.get("available")]
    out = [f"# extproc bench — {meta['date']}", ""]
    out += [f"- {k}: {v}" for k, v in meta["facts"].items()]
    out += ["", "Modes: " + "; ".join(f"`{m}` = {d}" for m, (_, _, d) in MODES.items())
            + ". Sizes: `1k` and `80k` Anthropic request bodies. `cN` = N concurrent connections.",
            ""]

    out += ["## Targets", ""]
    rows = []
    for t in targets:
        if not t.get("available"):
            rows.append([f"`{t['name']}`", t["label"], "unavailable", "", "", t.get("reason", "")])
            continue
        rows.append([
            f"`{t['name']}`", t["label"], f"{t['startup_s']:.2f}",
            f"{t['procs']['envoy']} + {t['procs']['app']}",
            f"{_num(t['rss_start']['envoy'] + t['rss_start']['app'], 0)} → "
            f"{_num(t['rss_end']['envoy'] + t['rss_end']['app'], 0)}"
            f" (app {_num(t['rss_end']['app'], 0)})",
            t.get("note", ""),
        ])
    out += _table(["target", "what", "start-up s", "procs envoy + app",
                   "RSS MB start → end", "note"], rows)
    out += ["", "Start-up = spawn until a first /v1/messages request through it answers 200. "
            "RSS sums the target's processes (Envoy and the Python side: ext_proc / LiteLLM).", ""]

    def grid(title: str, value: Any, note: str, only: Any = None) -> None:
        keys = [s for s in shapes if only is None or only(s)]
        if not keys:
            return
        rows = []
        for shape in keys:
            row = [_shape_label(shape)]
            for name in names:
                cell = table.get((shape, name))
                row.append("-" if cell is None else value(cell) + _flag(cell))
            rows.append(row)
        out.extend([f"## {title}", "", *_table(["shape", *[f"`{n}`" for n in names]], rows),
                    "", note, ""])

    goal_rows = goals.evaluate(table, targets, shapes)
    out += ["## Goals of the performance issue, on this run", ""]
    out += _table(["goal", "measured (gateway)", "met"], goal_rows)
    out += ["", "Measured, never asserted: one run on a shared machine; see the tables below.", ""]

    grid("Requests per second", lambda c: _num(c.rps, 0),
         "Completed 2xx responses per second (streams: whole streams); median over repeats.")
    ratio_pairs = [(a, b) for a, b in RATIOS if a in names and b in names]
    ratio_pairs += [(n, "gateway") for n in names if n.startswith("gateway-w")]
    ratio_pairs += [(n, f"litellm-{n.split('-')[1]}") for n in names
                    if n.startswith("gateway-w") and f"litellm-{n.split('-')[1]}" in names]
    if ratio_pairs:
        rows = []
        for shape in shapes:
            row = [_shape_label(shape)]
            for a, b in ratio_pairs:
                ca, cb = table.get((shape, a)), table.get((shape, b))
                row.append(f"{ca.rps / cb.rps:.2f}x" if ca and cb and cb.rps else "-")
            rows.append(row)
        out += ["## Throughput ratios (same run)", ""]
        out += _table(["shape", *[_ratio_label(a, b) for a, b in ratio_pairs]], rows)
        out += [""]
    grid("Latency p50 / p99 (ms)", lambda c: f"{_num(c.p50_ms, 2)} / {_num(c.p99_ms, 2)}",
         "Whole response (streams: until the last byte). wrk's percentiles for json/sse, "
         "the Python client's for paced streams and for LiteLLM.")
    grid("Streams: time to first byte / first token, p50 (p99 TTFT) ms",
         lambda c: f"{_num(c.ttfb_p50_ms, 2)} / {_num(c.ttft_p50_ms, 2)} ({_num(c.ttft_p99_ms, 2)})",
         "First token = the first answer text (the first `content_block_delta` for Anthropic "
         "targets, the first content chunk for the OpenAI pass-through ones); the backend "
         "sends it at once. The connections start spread over one stream's length, so "
         "equal-length streams do not arrive in lockstep bursts.",
         only=lambda s: s.startswith("paced"))
    grid("CPU per request (ms): total (Envoy + app)",
         lambda c: f"{_num(c.cpu_ms_per_req, 2)} ({_num(c.cpu_envoy_ms, 2)} + {_num(c.cpu_app_ms, 2)})",
         "utime+stime of the target's processes from /proc during the run, per completed "
         "request; 'app' is the Python side (ext_proc, LiteLLM). Backend and load generator "
         "excluded.")
    grid(f"CPU per streamed chunk (µs), paced streams of {TOKENS} chunks",
         lambda c: _num(None if c.cpu_ms_per_req is None else c.cpu_ms_per_req * 1000 / TOKENS, 0),
         "CPU per request divided by the chunks in each stream.",
         only=lambda s: s.startswith("paced"))
    errors = [(r.target, r.shape, r.rep, r.errors) for r in runs if r.errors]
    if errors:
        out += ["## Errors", ""]
        out += [f"- `{t}` {s} rep {rep}: {e}" for t, s, rep, e in errors]
        out += [""]
    return "\n".join(out)
