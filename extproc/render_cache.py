"""Envoy configs rendered by an earlier `extproc up`, kept for the next one.

Rendering imports envoy-data-plane's typed Envoy API: ~0.7 s of CPU even on the fast path
(extproc/envoy_render_fast.py), the longest step of `extproc up`'s start-up. What it renders
depends only on the config, the profile, this package's code and the rendering libraries, so
a render is kept under a digest of those and reused when they recur (a restart with the same
config). The rendered file holds no secrets: backend keys live in the ext_proc server, never in
Envoy's config.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from importlib import metadata
from pathlib import Path

KEEP = 16  # renders kept; the least recently used go first
_PACKAGE = Path(__file__).resolve().parent
_LIBRARIES = ("envoy-data-plane", "betterproto2", "PyYAML")


def _folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "extproc"


def kept_render(config_text: str, profile: str) -> Path | None:
    """Where the render of these inputs is kept (the file may not exist yet), or None when
    there is no writable cache folder."""
    try:
        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        return None
    _prune(folder)
    digest = hashlib.sha256()
    for part in (config_text, profile, *map(_version, _LIBRARIES)):
        digest.update(part.encode() + b"\0")
    for source in sorted(_PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    return folder / f"envoy-{digest.hexdigest()[:40]}.yaml"


def reuse(kept: Path, destination: Path) -> bool:
    """Copy a kept render to `destination`; False when there is none (or it cannot be read)."""
    try:
        shutil.copyfile(kept, destination)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        kept.touch()  # recently used: pruned last
    return True


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _prune(folder: Path) -> None:
    renders = sorted(folder.glob("envoy-*.yaml"), key=_mtime, reverse=True)
    for stale in renders[KEEP:]:
        stale.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
