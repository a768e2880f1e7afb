"""Data: a spec's data section -> tokenized / transformed train, validation and test splits.

``build_data(spec.data, backbone, spec_dir, seed)`` dispatches on the data ``kind`` through a registry
(one builder per kind). Every example carries its id within its split (``"index"``), which the
activation cache uses to look stored activations up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ftengine.data.assemble import check_num_classes
from ftengine.data.bundle import DataBundle
from ftengine.data.images import build_digits, build_image_files, load_images
from ftengine.data.sampling import EpochBatchSampler
from ftengine.data.tables import locate
from ftengine.data.text import build_text, load_text
from ftengine.errors import DataError
from ftengine.spec.data import DataSpec

__all__ = ["DataBundle", "EpochBatchSampler", "build_data", "check_num_classes", "load_file", "register_data_kind"]


class DataKind(NamedTuple):
    """How one data kind is built.

    Attributes:
        build: ``(spec, backbone, spec_dir, seed) -> DataBundle`` for training.
        load: ``(spec, backbone, path, labels, *, require_labels, where) -> DataBundle`` (one file as the
            test split, for eval/predict), or None when the kind reads no files.
    """

    build: Callable[[Any, Any, Path | None, int], DataBundle]
    load: Callable[..., DataBundle] | None


DATA_KINDS: dict[str, DataKind] = {
    "text": DataKind(build_text, load_text),
    "image_folder": DataKind(build_image_files, load_images),
    "image_csv": DataKind(build_image_files, load_images),
    "sklearn_digits": DataKind(build_digits, None),
}


def register_data_kind(kind: str, build: Callable[..., DataBundle], load: Callable[..., DataBundle] | None = None) -> None:
    """Add a data kind (the spec union must accept it too)."""
    DATA_KINDS[kind] = DataKind(build, load)


def build_data(spec: DataSpec, backbone: Any, spec_dir: str | Path | None = None, seed: int = 0) -> DataBundle:
    """Read, split and encode the data a spec names.

    Args:
        spec: the spec's data section.
        backbone: gives ``tokenizer`` (text) or ``preprocessing`` (image: image_size, mean, std).
        spec_dir: the spec file's folder; relative data paths start here (default: the working directory).
        seed: the training seed (default order of the training loader; never changes an example).

    Returns:
        The splits, label names, collate function and loaders.

    Raises:
        DataError: missing files or columns, malformed rows, unseen labels, empty splits, unreadable images.
    """
    builder = DATA_KINDS.get(spec.kind)
    if builder is None:
        raise DataError(f"data.kind: no data kind '{spec.kind}' (kinds: {', '.join(DATA_KINDS)}); use one of them")
    return builder.build(spec, backbone, Path(spec_dir) if spec_dir is not None else None, seed)


def load_file(spec: DataSpec, backbone: Any, path: str | Path, labels: list[str], *, require_labels: bool = True,
              where: str = "input") -> DataBundle:
    """One file (or image folder) encoded like the training data, as the ``test`` split of a bundle.

    For ``ftengine eval RUN_DIR --data FILE`` (labels required) and ``ftengine predict`` (labels optional:
    unlabelled examples get label -1). Texts/paths stay on the dataset (``bundle.test.texts`` / ``.items``).

    Args:
        spec: the run's data section (columns, encoding, max_length, image size).
        backbone: the run's backbone (tokenizer / preprocessing).
        path: the file or folder (relative to the working directory).
        labels: the run's label names (``labels.json``); class ids follow this order.
        require_labels: the file must carry known labels.
        where: how messages name the file's origin (``--data``, ``--input``).

    Raises:
        DataError: as for :func:`build_data`; labels unknown to the run when ``require_labels``.
    """
    kind = DATA_KINDS.get(spec.kind)
    if kind is None or kind.load is None:
        raise DataError(f"{where}: {spec.kind} data reads no files (got {path}); evaluate the run's own test split")
    # Only image kinds read folders; a folder given for a text file is reported as such, not read.
    target = locate(str(path), None, where, want_dir=spec.kind != "text" and Path(path).is_dir())
    return kind.load(spec, backbone, target, list(labels), require_labels=require_labels, where=where)
