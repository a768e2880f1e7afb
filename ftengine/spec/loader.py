"""Load spec files (JSON or YAML), apply `key.path=value` overrides, validate, report every problem.

Every problem becomes one line: ``file: dotted.path: what is wrong (got X); how to fix``.
"""

from __future__ import annotations

import difflib
import json
import re
import reprlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ftengine.errors import SpecError
from ftengine.spec.model import Spec, cross_section_problems

_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


MAX_SPEC_BYTES = 1 << 20
"""Largest spec file read (1 MiB): real specs are a few kB; data belongs in data files."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted (real specs nest about 5 deep)."""


class _SpecYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases.

    An alias (``*name``) reuses an anchored node; nested aliases expand exponentially ("billion laughs":
    ten lines become gigabytes once anything walks the result). Spec files are short and hand-written,
    so instead of bounding the expansion (which PyYAML does not measure) aliases are refused outright:
    there is nothing to count and no size to tune.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 (PyYAML hook)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(problem=f"got alias '*{event.anchor}'", problem_mark=event.start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses aliases (see :class:`_SpecYamlLoader`)."""
    return yaml.load(text, Loader=_SpecYamlLoader)  # noqa: S506 (a SafeLoader subclass)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Parse a spec file into a plain dict, with file-and-line errors for syntax problems.

    Refuses files over ``MAX_SPEC_BYTES``, YAML aliases, and nesting deeper than ``MAX_DEPTH``, so a hostile
    file cannot make loading hang or exhaust memory.
    """
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path}: is a folder, not a spec file (got a directory); name the .yaml or .json file in it")
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found; check the path (cwd is {Path.cwd()})")
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SpecError(f"{path}: unknown spec file type (got '{path.suffix}'); use .json, .yaml or .yml")
    with path.open("rb") as f:
        raw = f.read(MAX_SPEC_BYTES + 1)  # never more, whatever the file claims to be
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: spec file is too large (got more than {MAX_SPEC_BYTES:,} bytes); a spec must be at "
                        f"most 1 MiB: keep data in data files and name them in the spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text (got byte 0x{raw[err.start]:02x} at offset {err.start}); "
                        "save the spec as UTF-8") from None
    try:
        data = json.loads(text) if fmt == "json" else parse_yaml(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg}); fix the syntax there") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        if what.startswith("got alias"):
            raise SpecError(f"{where}: YAML aliases are not accepted in spec files ({what}); write the value out "
                            "where it is used") from None
        raise SpecError(f"{where}: invalid YAML ({what}); fix the syntax there") from None
    except RecursionError:
        data = _TOO_DEEP
    if data is _TOO_DEEP or _depth(data) > MAX_DEPTH:
        raise SpecError(f"{path}: nesting is too deep (got more than {MAX_DEPTH} levels of mappings and lists); "
                        "a spec nests only a few levels: fix the file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of sections (got {type(data).__name__}); start with 'backbone:'")
    data.pop("$schema", None)  # editors' schema pointer, not part of the spec
    return data


_TOO_DEEP = object()


def _depth(data: Any) -> int:
    """Deepest nesting of dicts and lists (iterative: the point is to survive hostile depth)."""
    deepest, todo = 0, [(data, 0)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level + 1)
            if deepest > MAX_DEPTH:
                return deepest
            todo.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


_SEGMENT = re.compile(r"([^.\[\]]*)((?:\[\d+\])*)")


def _key_parts(key: str) -> list[tuple[str, bool]] | None:
    """An override's key as (name or index, written as [N]) parts: `freeze.stages[1].epochs` (the notation of
    the error messages) and `freeze.stages.1.epochs` both give freeze, stages, 1, epochs; None when malformed."""
    parts: list[tuple[str, bool]] = []
    for segment in key.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None or not (match[1] or match[2]):
            return None
        if match[1]:
            parts.append((match[1], False))
        parts += [(index, True) for index in re.findall(r"\d+", match[2])]
    return parts


def _set_override(data: dict[str, Any], key: str, value: Any) -> str | None:
    """Set `key` (see `_key_parts`) to `value` in `data`, creating mappings as needed; a problem, or None."""
    parts = _key_parts(key)
    if not parts:
        return "expected key.path=value with names and list indexes, e.g. freeze.stages[1].epochs=2"
    node: Any = data
    for i, (part, bracketed) in enumerate(parts):
        where = "".join(f"[{p}]" if b else (f".{p}" if j else p) for j, (p, b) in enumerate(parts[:i]))
        if isinstance(node, list):
            if not part.isdigit():
                return f"'{where}' is a list; pick an item by index, e.g. {where}[0].{part}"
            if int(part) >= len(node):
                return f"'{where}' has {len(node)} item(s) (got index {part}); use an index from 0 to {len(node) - 1}"
            slot: Any = int(part)
        elif isinstance(node, dict) and not bracketed:
            slot = part
        elif isinstance(node, dict):
            mapping = repr(where) if where else "the spec"
            return f"{mapping} is a mapping, not a list; name one of its keys, not [{part}]"
        else:
            return f"'{where}' is a value ({reprlib.repr(node)}), not a mapping or list; check the key path"
        if i == len(parts) - 1:
            node[slot] = value
        else:
            node = node[slot] if isinstance(node, list) else node.setdefault(slot, {})
    return None


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict, creating mappings as needed; list
    items by index, as `a.b[1].c` or `a.b.1.c`."""
    problems: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"override '{item}': expected key.path=value; e.g. training.epochs=2")
            continue
        try:
            value = parse_yaml(raw) if raw else ""
        except (yaml.YAMLError, RecursionError):  # not YAML (or hostile): the text itself
            value = raw
        problem = _set_override(data, key.strip(), value)
        if problem:
            problems.append(f"override '{item}': {problem}")
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
    if kind in ("int_parsing_size", "int_parsing"):
        most = _upper_bound(model, names)
        if kind == "int_parsing_size" and most is not None:  # e.g. 1.0e+20 for a batch size
            return f"out of range (got {shown}); use a value <= {most}"
        if isinstance(got, str) and _is_float_text(got):  # YAML 1.1 reads 1e12 (no dot) as text
            limit = f" (at most {most})" if most is not None else ""
            return f"not a whole number (got {shown}); write it in digits{limit}, e.g. 1000 for 1e3"
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


def _upper_bound(model: type[BaseModel] | None, names: list[str]) -> Any:
    """The `le` bound of the field the error is about, when it has one."""
    field = model.model_fields.get(names[-1]) if model is not None and names else None
    return next((m.le for m in (field.metadata if field else ()) if hasattr(m, "le")), None)


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parent_model(model: type[BaseModel] | None, key: str) -> type[BaseModel] | None:
    return model


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
