"""Freeze selectors: which layer groups a stage's `trainable` entries (and `lr_multipliers` keys) name.

Selector forms, tried in this order:

- `all` (every backbone group and the head), `backbone` (every backbone group), `head`;
- an exact group name: `encoder.layer.3`, `layer4`, `_blocks.7`;
- a numeric range, ends inclusive: `encoder.layer.4-5`, `_blocks.10-15`, `layer3-4`;
- `re:<regex>`, matched against the whole group name (`re:encoder\\.layer\\.[3-5]`);
- a glob with `*`, `?` or `[...]`: `encoder.*`, `_blocks.1?`.

Matching is lenient (a range reaching past the backbone still matches the groups it does name) and
every problem comes back as text, so a plan can report all of them at once.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

HEAD = "head"
KEYWORDS = ("all", "backbone", HEAD)
_RANGE = re.compile(r"^(?P<prefix>.*?)(?P<start>\d+)-(?P<end>\d+)$")
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)$")


@dataclass(frozen=True)
class Selection:
    """What one selector matched.

    Attributes:
        groups: matched group names, in graph order (backbone input to output, then `head`).
        problem: what is wrong and how to fix it (no location prefix), or None.
    """

    groups: tuple[str, ...]
    problem: str | None = None


def select(selector: str, backbone_groups: Sequence[str]) -> Selection:
    """Match one selector against the backbone's group names (plus the head).

    Args:
        selector: the selector text as written in the spec.
        backbone_groups: backbone group names, input to output (without the head).
    """
    names = [*backbone_groups, HEAD]
    if selector == "all":
        return Selection(tuple(names))
    if selector == "backbone":
        return Selection(tuple(backbone_groups))
    if selector in names:
        return Selection((selector,))
    if selector.startswith("re:"):
        return _select_regex(selector, names)
    ranged = _RANGE.match(selector)
    if ranged:
        return _select_range(selector, ranged, backbone_groups)
    if any(ch in selector for ch in "*?["):
        found = tuple(n for n in names if fnmatch.fnmatchcase(n, selector))
        if found:
            return Selection(found)
        return Selection((), f"glob '{selector}' matches no layer group (groups: {compress_list(names)}); "
                             "check the pattern (globs match whole names, e.g. 'encoder.layer.*')")
    return Selection((), _no_group(selector, backbone_groups))


def _select_regex(selector: str, names: list[str]) -> Selection:
    pattern = selector[3:]
    try:
        regex = re.compile(pattern)
    except re.error as err:
        return Selection((), f"invalid regular expression (got '{pattern}': {err}); fix the pattern after 're:'")
    found = tuple(n for n in names if regex.fullmatch(n))
    if found:
        return Selection(found)
    return Selection((), f"regex '{pattern}' matches no whole layer group name (groups: {compress_list(names)}); "
                         "check the pattern (it must match the entire name)")


def _select_range(selector: str, match: re.Match[str], backbone_groups: Sequence[str]) -> Selection:
    prefix, start, end = match["prefix"], int(match["start"]), int(match["end"])
    family = _family(prefix, backbone_groups)
    if not family:
        return Selection((), _no_group(selector, backbone_groups))
    if start > end:
        return Selection((), f"range '{selector}' runs backwards (got start {start} > end {end}); "
                             f"write '{prefix}{end}-{start}'")
    wanted = range(start, end + 1)
    found = tuple(n for n in backbone_groups if n in {f"{prefix}{i}" for i in wanted})
    missing = [i for i in wanted if i not in family]
    if not missing:
        return Selection(found)
    lo, hi = max(start, min(family)), min(end, max(family))
    hint = f"did you mean '{prefix}{lo}-{hi}'?" if lo <= hi else f"use numbers {min(family)}-{max(family)}"
    return Selection(found, f"range '{selector}' reaches past the backbone: no {_show_missing(prefix, missing)} "
                            f"(backbone has {prefix}{min(family)} .. {prefix}{max(family)}); {hint}")


def _show_missing(prefix: str, missing: list[int]) -> str:
    shown = ", ".join(f"{prefix}{i}" for i in missing[:3])
    return shown + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")


def _family(prefix: str, names: Sequence[str]) -> dict[int, str]:
    """Numbered groups sharing `prefix`: {number: name}."""
    out: dict[int, str] = {}
    for name in names:
        m = _NUMBERED.match(name)
        if m and m["prefix"] == prefix:
            out[int(m["num"])] = name
    return out


def _no_group(selector: str, backbone_groups: Sequence[str]) -> str:
    """`no layer group 'X' (backbone has ...); did you mean 'Y'?`"""
    for pattern, key in ((_NUMBERED, "num"), (_RANGE, "start")):
        m = pattern.match(selector)
        family = _family(m["prefix"], backbone_groups) if m else {}
        if family:
            # Same numbered family (encoder.layer.N): suggest the nearest existing number.
            num, prefix = int(m[key]), m["prefix"]
            nearest = family[min(family, key=lambda i: (abs(i - num), i))]
            return (f"no layer group '{selector}' (backbone has {prefix}{min(family)} .. {prefix}{max(family)}); "
                    f"did you mean '{nearest}'?")
    numbered = _RANGE.match(selector) or _NUMBERED.match(selector)
    if numbered:  # a misspelt family (encoder.layers.3-5): the same numbers on the nearest family's prefix
        prefixes = sorted({m["prefix"] for m in map(_NUMBERED.match, backbone_groups) if m})
        near = difflib.get_close_matches(numbered["prefix"], prefixes, n=1, cutoff=0.6)
        if near:
            return (f"no layer group '{selector}' (groups: {compress_list([*backbone_groups, HEAD])}); "
                    f"did you mean '{near[0]}{selector[len(numbered['prefix']):]}'?")
    names = [*backbone_groups, *KEYWORDS]
    close = difflib.get_close_matches(selector, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "use a group name, a range like 'encoder.layer.4-5', a glob, 're:...', all, backbone or head"
    return f"no layer group '{selector}' (groups: {compress_list([*backbone_groups, HEAD])}); {hint}"


def _runs(names: Sequence[str], universe: Sequence[str]) -> list[list[str]]:
    """Split `names` into runs of consecutively numbered groups that are also adjacent in `universe`."""
    position = {n: i for i, n in enumerate(universe)}
    runs: list[list[str]] = []
    for name in sorted(names, key=lambda n: position.get(n, len(position))):
        if runs:
            prev = runs[-1][-1]
            a, b = _NUMBERED.match(prev), _NUMBERED.match(name)
            if (a and b and a["prefix"] == b["prefix"] and int(b["num"]) == int(a["num"]) + 1
                    and position.get(name) == position.get(prev, -2) + 1):
                runs[-1].append(name)
                continue
        runs.append([name])
    return runs


def compress_ranges(names: Sequence[str], universe: Sequence[str]) -> str:
    """Selector-style summary: `embeddings, encoder.layer.0-3, head` (copy-pastable into a spec)."""
    parts = []
    for run in _runs(names, universe):
        if len(run) == 1:
            parts.append(run[0])
        else:
            parts.append(f"{run[0]}-{_NUMBERED.match(run[-1])['num']}")
    return ", ".join(parts)


def compress_list(names: Sequence[str]) -> str:
    """Listing style for messages: `embeddings, encoder.layer.0 .. encoder.layer.5, pooler, head`."""
    parts = []
    for run in _runs(names, names):
        parts.append(run[0] if len(run) == 1 else f"{run[0]}, {run[1]}" if len(run) == 2 else f"{run[0]} .. {run[-1]}")
    return ", ".join(parts)
