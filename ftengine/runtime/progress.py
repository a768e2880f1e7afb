"""Console output of a run: tqdm bars (only on a terminal, never with --quiet), one summary line per epoch, and
warnings."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Console:
    """Progress bars and messages for one run.

    Args:
        quiet: no bars and no per-epoch lines (errors and the final summary still print).
        silent: print nothing at all (a data-parallel rank other than 0: rank 0 speaks for the run).
    """

    def __init__(self, quiet: bool = False, *, silent: bool = False) -> None:
        self.quiet, self.silent = quiet or silent, silent
        self.bars = not self.quiet and sys.stderr.isatty()
        self._epoch_bar: Any = None

    def bar(self, iterable: Iterable[T], *, total: int | None = None, desc: str = "", initial: int = 0,
            unit: str = "batch") -> Iterator[T] | Any:
        """A tqdm bar over `iterable` when bars are on, else the iterable itself."""
        if not self.bars:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=False, dynamic_ncols=True)

    def epochs(self, total: int, initial: int) -> None:
        """Open (or reopen) the run-level epoch bar."""
        if self.bars:
            from tqdm.auto import tqdm

            self.close()
            self._epoch_bar = tqdm(total=total, initial=initial, desc="epochs", unit="epoch", position=0,
                                   leave=False, dynamic_ncols=True)

    def epoch_done(self) -> None:
        """Advance the epoch bar."""
        if self._epoch_bar is not None:
            self._epoch_bar.update(1)

    def line(self, text: str) -> None:
        """A message that does not tear the bars (suppressed by --quiet)."""
        if not self.quiet:
            self.always(text)

    def always(self, text: str) -> None:
        """A message printed even with --quiet (final results); never by a silent console (data-parallel ranks but
        rank 0)."""
        if self.silent:
            return
        if self.bars:
            from tqdm.auto import tqdm

            tqdm.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Close the epoch bar."""
        if self._epoch_bar is not None:
            self._epoch_bar.close()
            self._epoch_bar = None


def format_epoch(row: dict[str, Any]) -> str:
    """The one-line epoch summary, e.g. `stage head  epoch 2/3  step 250  train_loss 0.612  val_accuracy 0.731 ...`."""
    parts = [f"[{row['stage']}] epoch {row['stage_epoch']}/{row['stage_epochs']}", f"step {row['step']}",
             f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "val_accuracy", "val_micro_f1", "val_macro_f1", "val_rmse", "val_mae", "val_pearson",
                "val_spearman"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['epoch_seconds']:.1f}s ({row['samples_per_second']:.0f} ex/s)")
    if row.get("best"):
        parts.append("*best")
    return "  ".join(parts)


def warn(text: str) -> None:
    """``ftengine: warning: <text>`` on stderr, shown even with --quiet (something on disk went wrong: a damaged
    checkpoint or cache entry the run worked around, which the user should know about)."""
    print(f"ftengine: warning: {text}", file=sys.stderr, flush=True)
