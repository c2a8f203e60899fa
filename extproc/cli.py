"""Command line: `extproc up | serve | envoy-config | mock-backend`. Callable as `main(argv)`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from extproc.config import Config, ConfigError, load_config


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# Flags that override config fields (flag dest == config field).
_CONFIG_FLAGS = {
    "listen": "--listen",
    "extproc_listen": "--extproc-listen",
    "metrics_listen": "--metrics-listen",
    "admin_listen": "--admin-listen",
    "backend": "--backend",
    "log_level": "--log-level",
    "log_prompts": "--log-prompts",
    "workers": "--workers",
    "envoy_concurrency": "--envoy-concurrency",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file")
    parser.add_argument("--listen", metavar="HOST:PORT", help="Envoy listener (default 127.0.0.1:8080)")
    parser.add_argument("--backend", metavar="URL",
                        help="OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (every model goes to it)")
    parser.add_argument("--extproc-listen", metavar="HOST:PORT", help="ext_proc gRPC address")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT", help="Prometheus /metrics address")
    parser.add_argument("--admin-listen", metavar="HOST:PORT", help="Envoy admin address")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-prompts", action="store_true", default=None,
                        help="debugging only: log each request's prompt (never keys)")
    parser.add_argument("--workers", type=int, metavar="N", help="ext_proc worker processes")
    parser.add_argument("--envoy-concurrency", type=int, metavar="N",
                        help="Envoy worker threads under `up` (default: CPUs minus --workers)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="extproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    up = sub.add_parser("up", help="run Envoy + the ext_proc server (+ mock backend if none given)")
    _add_config_flags(up)
    serve = sub.add_parser("serve", help="run only the ext_proc gRPC server (Kubernetes sidecar)")
    _add_config_flags(serve)
    render = sub.add_parser("envoy-config", help="print the envoy.yaml rendered from the config")
    _add_config_flags(render)
    render.add_argument("--profile", choices=["local", "compose", "kubernetes"], default="local")
    render.add_argument(
        "--fast", action="store_true",
        help="import the typed Envoy API unvalidated (~2 s faster; what `up` runs)",
    )
    sub.add_parser(
        "mock-backend", help="run the built-in mock OpenAI-compatible backend (--help for its flags)"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {
        field: getattr(args, field, None) for field in _CONFIG_FLAGS
    }
    try:
        return load_config(args.config, overrides)
    except ConfigError as exc:
        message = str(exc)
        for field, flag in _CONFIG_FLAGS.items():
            if overrides.get(field) is None:
                continue
            config_field = "backends" if field == "backend" else field
            if message.startswith(config_field + ".") or message.startswith(config_field + ":"):
                raise ConfigError(f"{flag}: {message.split(': ', 1)[-1]}") from None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mock-backend"]:
        # The mock has its own flags; hand them over untouched.
        from extproc.mock_backend import main as mock_main

        return int(mock_main(argv[1:]) or 0)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = config_from_args(args)
        if args.command in ("up", "serve"):
            from extproc.tracing import require_tracing

            require_tracing(config)
    except (UsageError, ConfigError) as exc:
        print(f"extproc: error: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1 and args.command in ("up", "serve"):
        _share_metrics_between_workers()
    from extproc.observe import configure_logging

    configure_logging(config.log_level, log_prompts=config.log_prompts)
    if args.command == "envoy-config":
        if args.fast:
            from extproc.envoy_render_fast import import_for_render

            import_for_render()
        from extproc.envoy_config import render_envoy_config

        sys.stdout.write(render_envoy_config(config, profile=args.profile))
        return 0
    if args.command == "serve":
        from extproc.server import run

        try:
            run(config)
        except OSError as exc:  # a busy or forbidden port: one line, no traceback
            print(f"extproc serve: {exc}", file=sys.stderr)
            return 1
        return 0
    from extproc.launcher import run_up

    return run_up(config)


def _share_metrics_between_workers() -> None:
    """Worker processes write metrics to files in one directory; worker 0 serves them merged.

    prometheus_client reads the variable when it is imported, so this runs before any import
    of it; worker processes inherit it.
    """
    import os
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="extproc-metrics-")

