"""The models the gateway serves, as the Anthropic and OpenAI model-list APIs show them.

Pure: built from config plus whatever model lists catch-all backends reported. Order is
config order (each served name, then its plain aliases); glob aliases (`claude-*`) are
routes, not models, so they are not listed, but `GET /v1/models/{id}` answers for any id a
glob alias routes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from extproc.config import Backend, Config
from extproc.errors import InvalidRequest

# "May be set to an epoch value if the release date is unknown" (Anthropic's ModelInfo).
UNKNOWN_DATE: Final = 0
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str  # the name clients use
    target: str  # the name the backend serves
    backend: str
    created: int = UNKNOWN_DATE  # unix seconds
    display_name: str | None = None
    max_input_tokens: int | None = None
    max_tokens: int | None = None


def _is_glob(alias: str) -> bool:
    return any(char in alias for char in "*?[")


def configured(config: Config) -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    for backend in config.backends:
        for route in backend.models:
            knobs = backend.options_for(route.name)
            names = [(route.name, None)] + [
                (alias, f"{alias} (alias of {route.name})")
                for alias in route.aliases
                if not _is_glob(alias)
            ]
            entries += [
                ModelEntry(name, route.name, backend.name, display_name=display,
                           max_input_tokens=knobs.context_window,
                           max_tokens=knobs.max_output_tokens)
                for name, display in names
            ]
    return entries


def reported(backend: Backend, models: Iterable[Mapping[str, Any]]) -> list[ModelEntry]:
    """Entries for the cards a catch-all backend's own model list returned."""
    entries = []
    for card in models:
        model_id = card.get("id")
        if not isinstance(model_id, str) or not model_id:
            continue
        created = card.get("created")
        if not isinstance(created, int) or isinstance(created, bool):
            created = _parse_date(card.get("created_at"))
        name = card.get("display_name")
        length = card.get("max_model_len") or card.get("max_input_tokens")
        entries.append(ModelEntry(
            model_id, model_id, backend.name, created=created,
            display_name=name if isinstance(name, str) else None,
            max_input_tokens=length if isinstance(length, int) else None,
        ))
    return entries


def _parse_date(value: object) -> int:
    if not isinstance(value, str):
        return UNKNOWN_DATE
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return UNKNOWN_DATE


def unique(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    """First entry per id wins, as routing does."""
    seen: set[str] = set()
    out = []
    for entry in entries:
        if entry.id not in seen:
            seen.add(entry.id)
            out.append(entry)
    return out


def find(config: Config, entries: Sequence[ModelEntry], model_id: str) -> ModelEntry | None:
    for entry in entries:
        if entry.id == model_id:
            return entry
    for backend in config.backends:
        for route in backend.models:
            if any(_is_glob(p) and fnmatch.fnmatchcase(model_id, p) for p in route.aliases):
                return ModelEntry(model_id, route.name, backend.name,
                                  display_name=f"{model_id} (alias of {route.name})")
    return None


# ---- pages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[ModelEntry]
    has_more: bool


def page(entries: Sequence[ModelEntry], query: Mapping[str, str]) -> Page:
    """Anthropic's cursor paging: `limit` (1-1000, default 20), `after_id` or `before_id`."""
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {raw_limit!r}")
    limit = int(raw_limit)
    ids = [entry.id for entry in entries]
    if query.get("after_id"):
        start = _position(ids, query["after_id"], "after_id") + 1
        return Page(list(entries[start : start + limit]), start + limit < len(entries))
    if query.get("before_id"):
        end = _position(ids, query["before_id"], "before_id")
        start = max(end - limit, 0)
        return Page(list(entries[start:end]), start > 0)
    return Page(list(entries[:limit]), len(entries) > limit)


def _position(ids: list[str], cursor: str, name: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(f"{name}: {cursor!r} is not a model id in this list") from None


# ---- rendering -------------------------------------------------------------------------------


def anthropic_model(entry: ModelEntry) -> dict[str, Any]:
    model: dict[str, Any] = {
        "type": "model",
        "id": entry.id,
        "display_name": entry.display_name or entry.id,
        "created_at": _rfc3339(entry.created),
    }
    if entry.max_input_tokens is not None:
        model["max_input_tokens"] = entry.max_input_tokens
    if entry.max_tokens is not None:
        model["max_tokens"] = entry.max_tokens
    return model


def anthropic_list(result: Page) -> dict[str, Any]:
    data = [anthropic_model(entry) for entry in result.entries]
    return {
        "data": data,
        "has_more": result.has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def openai_model(entry: ModelEntry) -> dict[str, Any]:
    return {"id": entry.id, "object": "model", "created": entry.created,
            "owned_by": entry.backend}


def openai_list(entries: Sequence[ModelEntry]) -> dict[str, Any]:
    return {"object": "list", "data": [openai_model(entry) for entry in entries]}


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
