"""Load spec files (JSON or YAML), apply `key.path=value` overrides, validate, report every problem.

Every problem becomes one line: ``file: dotted.path: what is wrong (got X); how to fix``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ftengine.errors import SpecError
from ftengine.spec.model import Spec, cross_section_problems

_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a spec file into a plain dict, with file-and-line errors for syntax problems."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found; check the path (cwd is {Path.cwd()})")
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SpecError(f"{path}: unknown spec file type (got '{path.suffix}'); use .json, .yaml or .yml")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg}); fix the syntax there") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML ({what}); fix the syntax there") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of sections (got {type(data).__name__}); start with 'backbone:'")
    data.pop("$schema", None)  # editors' schema pointer, not part of the spec
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict, creating mappings as needed."""
    problems: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"override '{item}': expected key.path=value; e.g. training.epochs=2")
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                problems.append(f"override '{item}': '{'.'.join(parts[: i + 1])}' is not a mapping or list index; check the key path")
                break
        else:
            last = parts[-1]
            if isinstance(node, list) and last.isdigit() and int(last) < len(node):
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                problems.append(f"override '{item}': cannot set '{key}'; check the key path")
    if problems:
        raise SpecError(problems)
    return data


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read, override and validate a spec file.

    Raises:
        SpecError: with one line per problem, all problems at once.
    """
    data = apply_overrides(read_spec_file(path), overrides)
    return validate_spec(data, source=str(path))


def validate_spec(data: dict[str, Any], source: str = "<spec>") -> Spec:
    """Validate a spec dict; every problem is reported, one line each."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError([f"{source}: {line}" for line in _describe(err)]) from None
    cross = cross_section_problems(spec)
    if cross:
        raise SpecError([f"{source}: {where}: {what}" for where, what in cross])
    return spec


def _describe(err: ValidationError) -> list[str]:
    lines = []
    for item in err.errors(include_url=False):
        model, names = _walk(Spec, item["loc"])
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            names = [*names, "kind"]
        where = ".".join(names) or "<top level>"
        lines.append(f"{where}: {_explain(item, model, names)}")
    return lines


def _walk(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, list[str]]:
    """Follow a pydantic error location through the models; drop union tags from the path.

    Returns the model that owns the last key (for 'did you mean' suggestions) and the cleaned path.
    """
    names: list[str] = []
    owner = model
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            names[-1:] = [f"{names[-1]}[{part}]"] if names else [f"[{part}]"]
            continue
        if current is None and owner is not None and _is_union_tag(owner, names, part):
            current = _tagged_model(owner, names, part)  # step into the tagged member (its keys, its hints)
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = current.model_fields.get(part)
            current = _model_in(field.annotation) if field is not None else None
            names.append(str(part))
        else:
            # inside a union or container: a tag (kind value) or a nested model name
            tagged = _tagged_model(owner, names, part)
            if tagged is not None:
                current = tagged
                continue
            names.append(str(part))
            current = None
    return owner if not (isinstance(current, type) and issubclass(current, BaseModel)) else current, names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one model an annotation holds (also inside Optional/list); None for unions of several models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for m in map(_model_in, getattr(annotation, "__args__", ()) or ()) if m is not None}
    return found.pop() if len(found) == 1 else None


def _union_members(owner: type[BaseModel] | None, names: list[str]) -> list[type[BaseModel]]:
    if owner is None or not names:
        return []
    field = owner.model_fields.get(names[-1].split("[")[0])
    if field is None:
        return []
    found: list[type[BaseModel]] = []

    def collect(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append(annotation)
        for arg in getattr(annotation, "__args__", ()) or ():
            collect(arg)

    collect(field.annotation)
    return found


def _tagged_model(owner: type[BaseModel] | None, names: list[str], tag: Any) -> type[BaseModel] | None:
    for member in _union_members(owner, names):
        kind = member.model_fields.get("kind")
        if kind is not None and kind.default == tag:
            return member
    return None


def _is_union_tag(owner: type[BaseModel], names: list[str], part: Any) -> bool:
    return _tagged_model(owner, names, part) is not None


def _explain(item: dict[str, Any], model: type[BaseModel] | None, names: list[str]) -> str:
    kind, got = item["type"], item.get("input")
    shown = _show(got)
    ctx = item.get("ctx") or {}
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "extra_forbidden":
        key = names[-1] if names else "?"
        parent = _parent_model(model, key)
        known = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key (got {shown}); {hint}"
    if kind == "union_tag_invalid":
        got = ctx.get("tag")
        shown = _show(got)
    if kind in ("union_tag_invalid", "literal_error"):
        expected = ctx.get("expected_tags") or ctx.get("expected") or ""
        close = difflib.get_close_matches(str(got), [e.strip(" '") for e in str(expected).replace(" or ", ",").split(",")], n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of {expected}"
        return f"not an accepted value (got {shown}); {hint}"
    if kind == "union_tag_not_found":
        return f"missing 'kind' (got keys {sorted(got) if isinstance(got, dict) else shown}); add kind: one of the section's kinds (see `ftengine schema`)"
    if kind == "value_error":
        msg = str(ctx.get("error", item["msg"]))
        return msg if "(got" in msg else f"{msg} (got {shown})"
    bound = _BOUNDS.get(kind)
    if bound is not None:
        op, key = bound
        return f"out of range (got {shown}); use a value {op} {ctx.get(key)}"
    if kind == "too_short":
        return f"must not be empty (got {shown}); give at least {ctx.get('min_length')} item(s)"
    return f"{item['msg'].rstrip('.')[0].lower()}{item['msg'].rstrip('.')[1:]} (got {shown}); fix the value"


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _parent_model(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    return model


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
