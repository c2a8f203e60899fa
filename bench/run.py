"""One command for the side-by-side bench (and the soak): `python bench/run.py [--quick | --soak]`.

Starts, on 127.0.0.1, the canned backend, plain Envoy, Envoy + a no-op Python ext_proc, our
gateway (`extproc up`) and LiteLLM; loads each with the same requests, interleaved and repeated;
prints a markdown table and writes bench/results/latest.{md,json,png}. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
import procs
import readme
import report
import targets as tg
from loadgen import Bodies, Run, Shape, ensure_wrk, measure, wrk_version
from payloads import large_request_template

BENCH = Path(__file__).resolve().parent
ALL_TARGETS = ("backend", "envoy", "noop", "noop3", "gateway", "gateway-w2", "litellm",
               "litellm-w2")
FULL_SHAPES = [(m, s) for m in ("json", "sse", "paced") for s in ("1k", "80k")]
# --quick: one shape per goal of the issue (ratios at c1/c8/c32, added latency at c1, first
# token at c8, the 80 KB body at c1/c32).
QUICK_SHAPES = [("json", "1k", 1), ("json", "1k", 8), ("json", "1k", 32), ("sse", "1k", 8),
                ("paced", "1k", 1), ("paced", "1k", 8), ("json", "80k", 1), ("json", "80k", 32)]
PACED_STRETCH = 1.25  # paced streams take 0.2 s each: a little longer for enough samples at c1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short smoke run (~2 min)")
    p.add_argument("--soak", action="store_true", help="bounded soak through the gateway")
    p.add_argument("--targets", help=f"comma list from {','.join(ALL_TARGETS)}")
    p.add_argument("--concurrency", help="comma list (default 1,8,32; quick: fixed per shape)")
    p.add_argument("--duration", type=float,
                   help="seconds per run (default 2; quick 1); paced streams get 1.25x")
    p.add_argument("--repeats", type=int, help="runs per target and shape (default 3; quick 1)")
    p.add_argument("--out", type=Path, default=BENCH / "results", help="results folder")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--keep-workdir", action="store_true", help="keep configs and logs")
    p.add_argument("--soak-requests", type=int, default=5000)
    p.add_argument("--soak-concurrency", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="gateway ext_proc workers (soak)")
    args = p.parse_args(argv)
    args.explicit_concurrency = args.concurrency is not None
    args.concurrency = [int(c) for c in (args.concurrency or "1,8,32").split(",")]
    args.duration = args.duration or (1.0 if args.quick else 2.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    # The worker variants are part of the full run; --quick keeps to one process per target.
    default = [t for t in ALL_TARGETS if not (args.quick and "-w" in t)]
    names = args.targets.split(",") if args.targets else default
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.targets = names
    return args


def _cmd_out(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, check=False, cwd=BENCH.parent, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout or done.stderr).decode(errors="replace").strip()


def machine_facts() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy = _cmd_out([shutil.which("envoy") or "envoy", "--version"]).split("version:")[-1].strip()
    commit = _cmd_out(["git", "rev-parse", "--short", "HEAD"])
    dirty = _cmd_out(["git", "status", "--porcelain", "--untracked-files=no", "--", "extproc"])
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}",
        "python": platform.python_version(),
        "envoy": envoy.split("/")[1] if "/" in envoy else envoy,
        "commit": commit + (" (extproc/ has uncommitted changes)" if dirty else ""),
    }


class Lab:
    """The running targets; stops them all on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.backend: tg.Target | None = None
        self.running: list[tg.Target] = []
        self.info: list[dict[str, Any]] = []

    def all_pids(self) -> list[int]:
        pids = [p for t in self.running for p in t.pids]
        return pids + (self.backend.pids if self.backend else [])

    async def start(self, names: list[str], litellm_version: str | None,
                    litellm_reason: str) -> None:
        self.backend = await tg.start_backend(self.workdir)
        workers_ok = any(n.startswith("gateway-w") for n in names) and tg.gateway_workers_supported()
        for name in names:
            entry: dict[str, Any] = {"name": name, "available": False}
            try:
                target = await self._start_one(name, litellm_version, litellm_reason, workers_ok)
            except tg.Unavailable as exc:
                entry.update(label=name, reason=str(exc))
                print(f"  {name}: unavailable ({exc})", flush=True)
                self.info.append(entry)
                continue
            snapshot = procs.tree(target.pids)
            counts = {"envoy": 0, "app": 0}
            for proc in snapshot.values():
                counts[procs.role(proc)] += 1
            entry.update(available=True, label=target.label, startup_s=target.startup_s,
                         procs=counts, rss_start=procs.rss_by_role(snapshot), note=target.note)
            if name.startswith("gateway-w"):
                wanted = int(name.split("-w")[1])
                if counts["app"] < wanted:
                    entry["note"] = (f"asked for {wanted} workers, saw {counts['app']} "
                                     "ext_proc process(es)")
            print(f"  {name}: ready in {target.startup_s:.2f}s", flush=True)
            self.running.append(target)
            self.info.append(entry)

    async def _start_one(self, name: str, litellm_version: str | None, litellm_reason: str,
                         workers_ok: bool) -> tg.Target:
        assert self.backend is not None
        if name == "backend":
            target = self.backend
            return target
        if name in tg.ENVOY_TARGETS:
            return await tg.start_envoy(self.workdir, self.backend, name)
        if name.startswith("gateway"):
            workers = int(name.split("-w")[1]) if "-w" in name else 1
            if workers > 1 and not workers_ok:
                raise tg.Unavailable("`extproc up` has no --workers flag yet")
            return await tg.start_gateway(self.workdir, self.backend, workers)
        if litellm_version is None:
            raise tg.Unavailable(litellm_reason)
        workers = int(name.split("-w")[1]) if "-w" in name else 1
        return await tg.start_litellm(self.workdir, self.backend, workers, litellm_version)

    def target(self, name: str) -> tg.Target:
        return next(t for t in self.running if t.name == name)

    def stop(self) -> None:
        for target in self.running:
            if target is not self.backend:
                target.stop()
        if self.backend is not None:
            self.backend.stop()


async def warm_up(lab: Lab, bodies: Bodies, shapes: list[tuple[str, str]]) -> None:
    from client import run_load

    for target in lab.running:
        for mode, size in shapes:
            raw = bodies.raw[mode, size]
            await run_load("127.0.0.1", target.port, lambda _i, raw=raw: raw, 4, total=24,
                           timeout_s=30)


async def bench(args: argparse.Namespace) -> int:
    started = time.monotonic()
    wrk, wrk_note = ensure_wrk()
    litellm_version, litellm_reason = None, ""
    if any(n.startswith("litellm") for n in args.targets):
        try:
            litellm_version = tg.ensure_litellm(tg.LITELLM_VENV / "install.log")
        except tg.Unavailable as exc:
            litellm_reason = str(exc)
    workdir = Path(tempfile.mkdtemp(prefix="extproc-bench-"))
    template, large_source = large_request_template()
    bodies = Bodies(workdir, template)
    if args.quick and not args.explicit_concurrency:
        shapes = [Shape(m, s, c) for m, s, c in QUICK_SHAPES]
    else:
        pairs = sorted({(m, s) for m, s, _ in QUICK_SHAPES}) if args.quick else FULL_SHAPES
        shapes = [Shape(m, s, c) for m, s in pairs for c in args.concurrency]
    kinds = list(dict.fromkeys((shape.mode, shape.size) for shape in shapes))
    lab = Lab(workdir)
    runs: list[Run] = []
    try:
        print("starting targets ...", flush=True)
        await lab.start(args.targets, litellm_version, litellm_reason)
        mark = time.monotonic()
        await warm_up(lab, bodies, kinds)
        print(f"warmed up in {time.monotonic() - mark:.0f}s; {len(shapes)} shapes x "
              f"{len(lab.running)} targets x {args.repeats} repeat(s)", flush=True)
        order = list(lab.running)
        quiet_s = 0.0
        died: dict[str, str] = {}
        for index, shape in enumerate(shapes):
            line = []
            for rep in range(args.repeats):
                shift = (index + rep) % len(order)
                for target in order[shift:] + order[:shift]:  # interleaved, rotating
                    quiet_s += procs.wait_quiet(lab.all_pids())
                    before = procs.tree(target.pids)
                    seconds = args.duration * (PACED_STRETCH if shape.mode == "paced" else 1)
                    # LiteLLM's answers at c=32 take longer than a run: wrk would drop the
                    # unfinished ones, the client lets them finish (and is far from its limit).
                    tool = None if target.name.startswith("litellm") else wrk
                    run = await measure(target.name, shape, rep, target.port, bodies, seconds, tool)
                    cpu = procs.cpu_delta(before, procs.tree(target.pids))
                    run.cpu_envoy_s, run.cpu_app_s = cpu["envoy"], cpu["app"]
                    runs.append(run)
                    if not target.alive() and target.name not in died:
                        died[target.name] = shape.key
                        print(f"  !! {target.name} exited during {shape.key}", flush=True)
                    if rep == args.repeats - 1:
                        line.append(f"{target.name} {run.ok / run.seconds:,.0f}/s")
            print(f"  {shape.key:<14} " + "  ".join(sorted(line)), flush=True)
        print(f"waited {quiet_s:.0f}s in total for targets to go idle between runs", flush=True)
        for entry in lab.info:
            if entry["name"] in died:
                entry["note"] = f"exited during {died[entry['name']]}; later numbers are errors"
            if entry.get("available"):
                entry["rss_end"] = procs.rss_by_role(procs.tree(lab.target(entry["name"]).pids))
    finally:
        lab.stop()
        if args.keep_workdir:
            print(f"configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts = machine_facts()
    facts.update({
        "load": f"wrk {wrk_version(wrk)} (1 thread) for json/sse; the Python asyncio client "
        "for paced streams and for LiteLLM" if wrk else f"Python asyncio client for all ({wrk_note})",
        "LiteLLM": litellm_version or f"unavailable: {litellm_reason}",
        "requests": f"1k = {bodies.sizes['1k']:,} B; 80k = {bodies.sizes['80k']:,} B from {large_source}",
        "runs": f"{args.duration:g} s each (paced {args.duration * PACED_STRETCH:g} s), {args.repeats} "
        "repeat(s), targets interleaved in rotating order, each run after the targets went idle"
        + (" (--quick)" if args.quick else ""),
        "wall time": f"{time.monotonic() - started:.0f} s",
    })
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "facts": facts,
            "quick": args.quick}
    text = report.render(meta, lab.info, runs, [s.key for s in shapes])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text + "\n")
    (args.out / "latest.json").write_bytes(orjson.dumps(
        {"meta": meta, "targets": lab.info, "shapes": [s.key for s in shapes],
         "cells": report.cells_json(runs)}, option=orjson.OPT_INDENT_2))
    raw = args.out / "raw"  # every sample; not committed
    raw.mkdir(exist_ok=True)
    (raw / "latest-runs.json").write_bytes(orjson.dumps([r.to_json() for r in runs]))
    print()
    print(text)
    if not args.no_chart:
        print(draw_chart(args.out / "latest.json", args.out / "latest.png"))
    if is_default_full_run(args):
        update_readme(text)
        readme.refresh()
        print("README.md and bench/README.md results updated")
    return 0


def is_default_full_run(args: argparse.Namespace) -> bool:
    """Only a full run with default settings may replace the results the README shows."""
    return (not args.quick and args.targets == list(ALL_TARGETS) and args.concurrency == [1, 8, 32]
            and args.duration == 2.0 and args.repeats == 3 and args.out == BENCH / "results")


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(text: str) -> None:
    readme = BENCH / "README.md"
    current = readme.read_text()
    head, _, rest = current.partition(README_START)
    _, _, tail = rest.partition(README_END)
    body = text.replace("# extproc bench", "### Latest full run:", 1).replace("\n## ", "\n#### ")
    readme.write_text(f"{head}{README_START}\n{body}\n\n![chart](results/latest.png)\n\n"
                      f"{README_END}{tail}")


def chart_python() -> tuple[str | None, str]:
    """A Python with matplotlib: this one, or bench/.venv-chart made on first use."""
    if subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0:
        return sys.executable, ""
    venv = BENCH / ".venv-chart"
    python = venv / "bin" / "python"
    if not python.exists():
        print("installing matplotlib into bench/.venv-chart (once) ...", flush=True)
        if subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True).returncode:
            return None, "could not create bench/.venv-chart"
    done = subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True)
    if done.returncode != 0:
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "matplotlib"],
                              capture_output=True)
        if done.returncode != 0:
            return None, "pip could not install matplotlib: " + done.stderr.decode()[-200:]
    return str(python), ""


def draw_chart(results: Path, png: Path) -> str:
    python, reason = chart_python()
    if python is None:
        return f"chart skipped: {reason}"
    done = subprocess.run([python, str(BENCH / "chart.py"), str(results), str(png)],
                          capture_output=True)
    if done.returncode != 0:
        return "chart failed: " + done.stderr.decode()[-300:]
    return f"chart: {png}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    if args.soak:
        from soak import soak

        return runner(soak(args))
    return runner(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
