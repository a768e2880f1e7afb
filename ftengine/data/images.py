"""Image classification data: a folder per class, a CSV of paths and labels, or scikit-learn's digits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ftengine.data.assemble import balance_weights, make_splits
from ftengine.data.bundle import DataBundle, counts
from ftengine.data.sniff import excerpt
from ftengine.data.splits import Rows
from ftengine.data.targets import encode_rows, label_tensor, require_label_columns, row_label, split_task
from ftengine.data.tables import Table, cell, locate, read_table, require_column
from ftengine.data.transforms import build_transform, preprocessing, transform_identity
from ftengine.errors import DataError, PlanError
from ftengine.spec.data import DIGIT_TAGS, AugmentSpec, DigitsDataSpec, ImageCsvDataSpec, ImageFolderDataSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def open_image(path: Path, where: str) -> Image.Image:
    """Open an image file as RGB.

    Raises:
        DataError: the file is missing or not a readable image (names the file).
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{where}: cannot read image {path} ({type(exc).__name__}: {exc}); "
                        "replace or remove the file") from exc


class ImageDataset(Dataset):
    """Images of one split, loaded and transformed on access.

    Args:
        items: image paths, or indices into ``source`` (in-memory images).
        label_ids: class id per item (-1: unlabelled).
        transform: image -> (3, S, S) float pixels.
        where: spec field for error messages.
        source: in-memory images: ``source(item) -> (3, H, W) tensor``; None: items are files.
    """

    def __init__(self, items: list, label_ids: list[int], transform: Callable[[Any], torch.Tensor], where: str,
                 source: Callable[[Any], torch.Tensor] | None = None) -> None:
        self.items, self.label_ids, self.transform, self.where, self.source = items, label_ids, transform, where, source

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        image = self.source(item) if self.source is not None else open_image(item, self.where)
        return {"pixels": self.transform(image), "label": self.label_ids[index], "index": index}


def collate_images(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack pixels (B, 3, S, S) with ``labels`` and ``index``."""
    return {"pixels": torch.stack([e["pixels"] for e in examples]),
            "labels": label_tensor([e["label"] for e in examples]),
            "index": torch.tensor([e["index"] for e in examples], dtype=torch.long)}


class _Digits:
    """8x8 digits in [0, 1] as 3-channel tensor images (picklable for DataLoader workers)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images  # (N, 8, 8) float32

    def __call__(self, item: int) -> torch.Tensor:
        return self.images[item].unsqueeze(0).expand(3, -1, -1)


def _files_digest(paths: list[Path], root: Path) -> Callable[[], str]:
    """Hash of the files' relative paths and bytes, computed only when a fingerprint is asked for."""
    def digest() -> str:
        h = hashlib.sha256()
        for p in paths:
            h.update(str(p.relative_to(root) if p.is_relative_to(root) else p).encode() + b"\0")
            h.update(p.read_bytes())
        return h.hexdigest()
    return digest


def _images(folder: Path) -> list[Path]:
    """Image files under ``folder`` at any depth, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def class_folders(root: Path, where: str) -> list[Path]:
    """The class subfolders of an image folder, sorted (hidden ones skipped).

    Raises:
        DataError: there are none (names how many files lie at the top instead).
    """
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        found = sum(1 for p in root.iterdir() if p.is_file())
        raise DataError(f"{where}: {root} has no class subfolders (got {found} files at the top); put each class's "
                        f"images in their own subfolder, e.g. {root / 'cat' / '001.jpg'}")
    return classes


def no_images(folder: Path, where: str) -> DataError:
    """The error for a class folder without images."""
    return DataError(f"{where}: class folder {folder} has no images (got none with extension "
                     f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")


def image_not_found(table: Table, i: int, column: str, image: Path) -> DataError:
    """The error for row ``i`` of an image CSV naming a missing image."""
    return DataError(f"{table.where}: {table.path} line {table.lines[i]}, column '{column}': image not found: "
                     f"{excerpt(image, 200)}; paths are relative to the CSV's folder {table.path.parent}")


def row_image(table: Table, i: int, column: str) -> Path:
    """Row ``i``'s image path, relative paths taken from the CSV's folder.

    Raises:
        DataError: the cell is empty, or the image does not exist.
    """
    image = Path(cell(table, i, column, table.where) or "").expanduser()
    image = image if image.is_absolute() else table.path.parent / image
    if not image.is_file():
        raise image_not_found(table, i, column, image)
    return image


def folder_rows(root: Path, where: str, *, require_labels: bool = True) -> Rows:
    """Images under ``root/<class>/`` (any depth); without class folders and ``require_labels`` False: all images."""
    if not require_labels and not any(d.is_dir() and not d.name.startswith(".") for d in root.iterdir()):
        items: list[Path] = _images(root)
        return Rows(items, [None] * len(items), [0] * len(items), root, where, _files_digest(items, root))
    items, labels = [], []
    for folder in class_folders(root, where):
        found = _images(folder)
        if not found:
            raise no_images(folder, where)
        items += found
        labels += [folder.name] * len(found)
    return Rows(items, labels, [0] * len(items), root, where, _files_digest(items, root))


def csv_rows(spec: ImageCsvDataSpec, path: Path, where: str, *, require_labels: bool = True) -> Rows:
    """Image paths (relative to the CSV's folder) and labels from a CSV/JSONL table."""
    return csv_table_rows(spec, read_table(path, where, encoding=spec.encoding), require_labels=require_labels)


def csv_table_rows(spec: ImageCsvDataSpec, table: Table, *, require_labels: bool = True) -> Rows:
    """Rows of a parsed image table (see :func:`csv_rows`); ``ftengine validate`` passes a file's first rows.

    Raises:
        DataError: a missing column, a missing image, or an empty label (classification).
    """
    where, path = table.where, table.path
    require_column(table, spec.path_column, "data.path_column")
    has_labels = require_label_columns(spec, table, require_labels=require_labels)
    items, labels = [], []
    for i in range(len(table.rows)):
        items.append(row_image(table, i, spec.path_column))
        labels.append(row_label(spec, table, i) if has_labels else None)
    files = _files_digest(items, path.parent)
    return Rows(items, labels, table.lines, path, where, lambda: table.digest + files())


def _check_image_backbone(backbone: Any, kind: str) -> None:
    if getattr(backbone, "modality", "image") != "image":
        raise PlanError(f"data.kind: {kind} data needs an image backbone (got a {backbone.modality} backbone); "
                        "use data.kind: text or an image backbone")


def _bundle(kind: str, spec: Any, backbone: Any, splits: Any, seed: int,
            source: Callable[[Any], torch.Tensor] | None, extra_parts: dict[str, Any]) -> DataBundle:
    augment: AugmentSpec = getattr(spec, "augment", AugmentSpec())
    pre = preprocessing(backbone, spec.image_size)
    eval_tf = build_transform(pre["image_size"], pre["mean"], pre["std"])
    train_tf = build_transform(pre["image_size"], pre["mean"], pre["std"], augment, train=True)
    datasets = {name: ImageDataset(part.items, splits.ids[name], train_tf if name == "train" else eval_tf,
                                   part.where, source) for name, part in splits.rows.items()}
    class_weights, sampler_weights = balance_weights(spec.balance, splits.ids["train"], len(splits.labels))
    task = split_task(spec, splits.ids["train"])
    stats = {**({"counts": {name: counts(i, splits.labels) for name, i in splits.ids.items()}}
                if task.kind == "classification" else {}),
             "notes": ([pre["note"]] if pre["note"] else []) + splits.notes, "image_size": pre["image_size"]}
    parts = dict(kind=kind, **splits.settings, **transform_identity(pre, augment), **extra_parts)
    return DataBundle(kind=kind, modality="image", train=datasets["train"], validation=datasets.get("validation"),
                      test=datasets.get("test"), labels=splits.labels, collate=collate_images, task=task,
                      class_weights=class_weights, train_sampler_weights=sampler_weights,
                      deterministic=not augment.is_random, seed=seed, stats=stats, fingerprint_parts=parts)


def build_image_files(spec: ImageFolderDataSpec | ImageCsvDataSpec, backbone: Any, spec_dir: Path | None,
                      seed: int) -> DataBundle:
    """Image folder or image CSV data (see :func:`ftengine.data.build_data`)."""
    _check_image_backbone(backbone, spec.kind)
    folder = spec.kind == "image_folder"
    given: dict[str, Rows] = {}
    for name in ("train", "validation", "test"):
        if (value := getattr(spec, name)) is not None:
            path = locate(value, spec_dir, f"data.{name}", want_dir=folder)
            given[name] = folder_rows(path, f"data.{name}") if folder else csv_rows(spec, path, f"data.{name}")
    explicit = getattr(spec, "label_columns", None) or spec.labels  # image folders: no label_columns
    splits = make_splits(given["train"], given.get("validation"), given.get("test"), split=spec.split,
                         limit=spec.limit, explicit=explicit, task=getattr(spec, "task", "classification"),
                         separator=getattr(spec, "label_separator", "|"), column=getattr(spec, "label_column", "label"))
    digests = {name: rows.digest for name, rows in given.items()}  # callables: hashed only when asked
    extra = {"columns": [spec.path_column, *(spec.label_columns or [spec.label_column])]} if not folder else {}
    return _bundle(spec.kind, spec, backbone, splits, seed, None, dict(digests=digests, **extra))


def build_digits(spec: DigitsDataSpec, backbone: Any, spec_dir: Path | None, seed: int) -> DataBundle:
    """scikit-learn's 1,797 handwritten digits: 8x8 grey (0..16) scaled to [0, 1], 3 channels, resized."""
    _check_image_backbone(backbone, spec.kind)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("data.kind: sklearn_digits needs scikit-learn (got it not installed); "
                        "pip install scikit-learn") from exc
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    n = len(images)
    rows = Rows(list(range(n)), [_digit_label(int(t), spec.task) for t in digits.target], [0] * n,
                "sklearn.datasets.load_digits", "data")
    splits = make_splits(rows, None, None, split=spec.split, limit=spec.limit, task=spec.task,
                         explicit=list(DIGIT_TAGS) if spec.task == "multilabel" else None)
    digest = hashlib.sha256(digits.images.tobytes() + digits.target.tobytes()).hexdigest()
    return _bundle(spec.kind, spec, backbone, splits, seed, _Digits(images), {"digests": {"arrays": digest}})


def _digit_label(digit: int, task: str) -> str:
    """The digit itself, or (multilabel) its tags joined by ``|`` (a 1 has none: an empty set)."""
    if task == "classification":
        return str(digit)
    return "|".join(tag for tag, members in DIGIT_TAGS.items() if digit in members)


def load_images(spec: Any, backbone: Any, path: Path, labels: list[str], *, require_labels: bool,
                where: str) -> DataBundle:
    """An image folder, a CSV of images, or one image file as the ``test`` split of a bundle."""
    _check_image_backbone(backbone, spec.kind)
    if path.is_dir():
        rows = folder_rows(path, where, require_labels=require_labels)
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        rows = Rows([path], [None], [0], path, where)
    elif isinstance(spec, ImageCsvDataSpec):
        rows = csv_rows(spec, path, where, require_labels=require_labels)
    else:
        raise DataError(f"{where}: expected an image folder or an image file (got {path}); "
                        "point at a folder with one subfolder per class, or at an image")
    ids = encode_rows(spec, rows, labels, strict=require_labels)
    pre = preprocessing(backbone, getattr(spec, "image_size", None))
    dataset = ImageDataset(rows.items, ids, build_transform(pre["image_size"], pre["mean"], pre["std"]), where)
    return DataBundle(kind=spec.kind, modality="image", train=None, validation=None, test=dataset, labels=list(labels),
                      collate=collate_images, fingerprint_parts=dict(kind=spec.kind, digest=rows.digest,
                                                                     **transform_identity(pre, None)))
