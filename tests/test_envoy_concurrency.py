"""How many worker threads `extproc up` gives Envoy: the CPUs left after the ext_proc workers."""

from __future__ import annotations

import pytest

from extproc import config as config_module
from extproc.cli import build_parser, config_from_args
from extproc.config import Config, ConfigError, envoy_concurrency, load_config


@pytest.mark.parametrize(("cpus", "workers", "expected"), [
    (2, 1, 1),  # this machine's shape: one core for Envoy, one for the Python worker
    (8, 1, 7),
    (8, 3, 5),
    (1, 1, 1),  # never zero
    (2, 4, 1),
])
def test_by_default_envoy_gets_the_cpus_the_workers_leave(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int, expected: int
) -> None:
    monkeypatch.setattr(config_module.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert envoy_concurrency(Config(workers=workers)) == expected


def test_a_configured_concurrency_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert envoy_concurrency(Config(envoy_concurrency=3)) == 3
    assert envoy_concurrency(load_config(env={"EXTPROC_ENVOY_CONCURRENCY": "2"})) == 2
    args = build_parser().parse_args(["up", "--envoy-concurrency", "4"])
    assert envoy_concurrency(config_from_args(args)) == 4


def test_zero_threads_is_refused() -> None:
    args = build_parser().parse_args(["up", "--envoy-concurrency", "0"])
    with pytest.raises(ConfigError, match="--envoy-concurrency"):
        config_from_args(args)
