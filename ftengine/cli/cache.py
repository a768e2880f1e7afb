"""`ftengine cache ls / clear`: inspect and remove persisted frozen-layer activation caches."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ftengine.cli._common import formatter

EPILOG = """\
examples:
  ftengine cache ls                       # entries in $FTENGINE_CACHE_DIR or ~/.cache/ftengine
  ftengine cache ls --verify              # also check every file's checksums (exit 1 if one is damaged)
  ftengine cache ls --dir runs/cache --json
  ftengine cache clear 6330ca2c           # one entry, by id prefix (as shown by ls)
  ftengine cache clear --stale            # leftovers of crashed fills and damaged entries
  ftengine cache clear --all

An entry is one data split's activations at one layer boundary, keyed by the frozen layers' weights, the
boundary, the data files' content and preprocessing, the split and the element type. Runs reuse an entry
only when every part matches. A run checks the checksums of every entry it reuses (about 0.1 s per
100 MB) and refills a damaged one with a warning; `ls --verify` checks them all and names each damaged
file and byte range.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cache` command with its `ls` and `clear` subcommands."""
    parser = subparsers.add_parser(
        "cache", help="list or clear persisted activation caches",
        description="List or remove the frozen-layer activation caches that runs keep between runs.",
        epilog=EPILOG, formatter_class=formatter())
    sub = parser.add_subparsers(dest="cache_command", metavar="{ls,clear}", required=True)
    ls = sub.add_parser("ls", help="list cache entries", epilog=EPILOG, formatter_class=formatter())
    ls.add_argument("--verify", action="store_true",
                    help="check every file against its per-chunk checksums (reads all cached bytes); exit 1 when "
                         "an entry is damaged")
    ls.add_argument("--json", action="store_true", help="print as JSON")
    clear = sub.add_parser("clear", help="remove cache entries", epilog=EPILOG, formatter_class=formatter())
    clear.add_argument("keys", metavar="KEY", nargs="*", help="entry ids or unique id prefixes (see `cache ls`)")
    clear.add_argument("--all", action="store_true", help="remove every entry")
    clear.add_argument("--stale", action="store_true", help="remove crashed fills' leftovers and damaged entries")
    for p in (ls, clear):
        p.add_argument("--dir", metavar="DIR", default=None,
                       help="cache directory, as cache.dir in a spec (default: $FTENGINE_CACHE_DIR, ~/.cache/ftengine)")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    m = entry["manifest"] or {}
    s = m.get("summary", {})
    boundary = f"{s['boundary']} (after {s.get('boundary_name', '?')})" if "boundary" in s else "-"
    return dict(id=entry["id"], status=entry["status"], problem=entry["problem"], split=s.get("split", "-"),
                boundary=boundary, dtype=s.get("dtype", "-"), examples=m.get("num_examples"),
                bytes=_dir_bytes(entry["path"]), created=m.get("created", "-"), model=s.get("model", "-"),
                spec=s.get("spec", "-"), key=m.get("key"), path=str(entry["path"]))


def _ls(root: Path, verify: bool, as_json: bool) -> int:
    from ftengine.runtime.cache.layout import list_entries

    rows = [_row(e) for e in list_entries(root, full=verify)]
    rows.sort(key=lambda r: (r["model"], r["spec"], r["split"], r["boundary"] == "-",
                             int(r["boundary"].split()[0]) if r["boundary"] != "-" else 0))
    if as_json:
        print(json.dumps(dict(root=str(root), entries=rows), indent=2))
        return 1 if verify and any(r["status"] == "invalid" for r in rows) else 0
    print(f"cache directory: {root}")
    if not rows:
        print("  (empty)")
        return 0
    print(f"{'ID':<14}{'STATUS':<9}{'SPLIT':<12}{'BOUNDARY':<28}{'DTYPE':<6}{'EXAMPLES':>9}{'SIZE':>11}  "
          f"{'CREATED':<20}MODEL / SPEC")
    for r in rows:
        ident = r["id"][:12] if r["status"] in ("ok", "invalid") else r["id"][:13]
        created = r["created"][:16].replace("T", " ")
        examples = "-" if r["examples"] is None else f"{r['examples']:,}"
        print(f"{ident:<14}{r['status']:<9}{r['split']:<12}{r['boundary']:<28}{r['dtype']:<6}{examples:>9}"
              f"{_size(r['bytes']):>11}  {created:<20}{r['model']} / {r['spec'] or '-'}")
        if r["problem"] and r["status"] != "partial" and not (verify and r["status"] == "invalid"):
            print(f"{'':<14}  -> {r['problem']}")
    total = sum(r["bytes"] for r in rows)
    print(f"{len(rows)} entries, {_size(total)}")
    if not verify:
        return 0
    damaged = [r for r in rows if r["status"] == "invalid"]
    for r in damaged:
        where = f"{r['split']}, boundary {r['boundary'].split()[0]}" if r["boundary"] != "-" else "unknown split"
        print(f"damaged: {r['id'][:12]} ({where}): {r['problem']}; a run refills it on its next use, or remove it "
              f"now: ftengine cache clear {r['id'][:12]}")
    return 1 if damaged else 0


def _clear(root: Path, keys: list[str], everything: bool, stale: bool) -> int:
    from ftengine.runtime.cache.layout import list_entries

    if not (keys or everything or stale):
        print("cache clear: nothing selected (got no KEY); give entry ids from `ftengine cache ls`, --stale or --all",
              file=sys.stderr)
        return 2
    entries = list_entries(root)
    chosen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if everything or (stale and entry["status"] in ("invalid", "stale")):
            chosen[entry["id"]] = entry
    for key in keys:
        matches = [e for e in entries if e["id"].startswith(key) and e["status"] in ("ok", "invalid")]
        if len(matches) != 1:
            what = "no entry" if not matches else f"{len(matches)} entries ({', '.join(e['id'][:12] for e in matches)})"
            print(f"cache clear: {what} matches '{key}' in {root}; use a longer id prefix from `ftengine cache ls`",
                  file=sys.stderr)
            return 2
        chosen[matches[0]["id"]] = matches[0]
    freed = 0
    for entry in chosen.values():
        freed += _dir_bytes(entry["path"])
        shutil.rmtree(entry["path"], ignore_errors=True)
    print(f"removed {len(chosen)} entries ({_size(freed)}) from {root}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run `cache ls` or `cache clear`."""
    from ftengine.runtime.cache.keys import cache_root

    root = cache_root(args.dir)
    started = time.perf_counter()
    if args.cache_command == "ls":
        code = _ls(root, args.verify, args.json)
        if args.verify and not args.json:
            print(f"verified in {time.perf_counter() - started:.1f}s")
        return code
    return _clear(root, list(args.keys), args.all, args.stale)
