"""Where `extproc up` keeps Envoy renders: one file per config, profile and code; a bounded folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extproc import render_cache
from extproc.render_cache import KEEP, kept_render, reuse


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "extproc"


def test_the_same_inputs_find_the_same_file_in_xdg_cache_home(cache_home: Path) -> None:
    kept = kept_render("listen: 127.0.0.1:8080\n", "local")
    assert kept is not None
    assert kept.parent == cache_home
    assert kept == kept_render("listen: 127.0.0.1:8080\n", "local")


def test_another_config_or_profile_finds_another_file() -> None:
    first = kept_render("listen: 127.0.0.1:8080\n", "local")
    assert first != kept_render("listen: 127.0.0.1:8081\n", "local")
    assert first != kept_render("listen: 127.0.0.1:8080\n", "compose")


def test_a_change_to_our_code_finds_another_file(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "envoy_config.py").write_text("RENDER = 1\n")
    monkeypatch.setattr(render_cache, "_PACKAGE", package)
    before = kept_render("listen: 127.0.0.1:8080\n", "local")
    (package / "envoy_config.py").write_text("RENDER = 2\n")
    assert kept_render("listen: 127.0.0.1:8080\n", "local") != before


def test_no_writable_folder_means_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert kept_render("listen: 127.0.0.1:8080\n", "local") is None


def test_only_the_most_recently_used_renders_stay(cache_home: Path) -> None:
    cache_home.mkdir()
    for age in range(KEEP + 5):
        render = cache_home / f"envoy-{age:02}.yaml"
        render.write_text("static_resources: {}\n")
        os.utime(render, (1_000_000 - age, 1_000_000 - age))  # envoy-00 is the newest
    unrelated = cache_home / "notes.txt"
    unrelated.write_text("kept")
    kept_render("listen: 127.0.0.1:8080\n", "local")
    left = sorted(p.name for p in cache_home.glob("envoy-*.yaml"))
    assert left == [f"envoy-{age:02}.yaml" for age in range(KEEP)]
    assert unrelated.exists()


def test_reuse_copies_a_kept_render_and_marks_it_recent(cache_home: Path, tmp_path: Path) -> None:
    kept = kept_render("listen: 127.0.0.1:8080\n", "local")
    assert kept is not None
    destination = tmp_path / "envoy.yaml"
    assert not reuse(kept, destination)  # nothing kept yet: the caller renders
    kept.write_text("static_resources: {}\n")
    os.utime(kept, (1_000_000, 1_000_000))
    assert reuse(kept, destination)
    assert destination.read_text() == "static_resources: {}\n"
    assert kept.stat().st_mtime > 1_000_000
