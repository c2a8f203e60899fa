"""A fast start for a process whose one job is rendering envoy.yaml (`extproc up` starts one).

envoy-data-plane's classes are pydantic dataclasses, and betterproto2 resolves a class's type
hints again for every field it looks up. Together that was ~2 s of CPU on our 2-core machine,
most of `extproc up`'s start-up. Here the API is imported as stdlib dataclasses (betterproto2
supports both, and the rendered envoy.yaml is the same) and the hints are resolved once per
class: ~0.6 s in all.

Skipping pydantic's validation is safe because nothing reaches a render unchecked: mypy checks
every field we set; the tests render every profile with validation on, compare that with this
mode and run `envoy --mode validate` (tests/test_envoy_config.py); and Envoy validates its
config when it starts. A process that already imported the API keeps it as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, get_type_hints

import betterproto2
import pydantic.dataclasses


def _stdlib_dataclass(cls: type | None = None, /, *, config: Any = None, **options: Any) -> Any:
    """Stands in for `pydantic.dataclasses.dataclass`; its pydantic `config` has no use here."""
    if cls is None:
        return lambda inner: dataclasses.dataclass(inner, **options)
    return dataclasses.dataclass(cls, **options)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, vars(sys.modules[cls.__module__]), {})


def import_for_render() -> bool:
    """Import extproc.envoy_config over the fast API; False when the API was already imported
    in this process (then it stays validated)."""
    if any(name.startswith("envoy_data_plane.envoy") for name in sys.modules):
        return False
    # Classes never change once rendering starts, so their hints never do.
    betterproto2.Message._type_hints = classmethod(_type_hints)  # type: ignore[assignment,method-assign,arg-type]
    original = pydantic.dataclasses.dataclass
    # The generated modules bind the decorator by name (`from pydantic.dataclasses import
    # dataclass`) as they are first imported, which happens inside this window.
    pydantic.dataclasses.dataclass = _stdlib_dataclass
    try:
        import extproc.envoy_config  # noqa: F401
    finally:
        pydantic.dataclasses.dataclass = original
    return True
