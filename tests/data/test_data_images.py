"""Image data: folders, CSVs of paths, scikit-learn digits; pixels against hand-computed references."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from data_helpers import make_folder, save_image, write_csv

from ftengine.data import build_data, load_file
from ftengine.errors import DataError, PlanError
from ftengine.spec import DigitsDataSpec, ImageCsvDataSpec, ImageFolderDataSpec


def normalise(x: torch.Tensor, pre: dict[str, Any]) -> torch.Tensor:
    mean, std = torch.tensor(pre["mean"]).view(3, 1, 1), torch.tensor(pre["std"]).view(3, 1, 1)
    return (x - mean) / std


def test_image_folder_pixels_labels_and_splits(tmp_path: Path, image_backbone: Any) -> None:
    files = make_folder(tmp_path / "imgs", {"cat": 6, "dog": 4})
    data = build_data(ImageFolderDataSpec(train="imgs", split={"validation": 0.2}), image_backbone, tmp_path, seed=0)
    assert data.labels == ["cat", "dog"] and (len(data.train), len(data.validation)) == (8, 2)
    assert data.deterministic and data.modality == "image"
    batch = next(iter(data.make_loader("train", 8)))
    assert batch["pixels"].shape == (8, 3, 16, 16) and batch["pixels"].dtype == torch.float32
    for row, i in enumerate(batch["index"].tolist()):
        path = data.train.items[i]
        # 16 px images at image_size 16: no resampling, so the reference is exact.
        want = normalise(files[path].float() / 255, image_backbone.preprocessing)
        torch.testing.assert_close(batch["pixels"][row], want)
        assert data.labels[batch["labels"][row]] == path.parent.name


def test_resize_matches_antialiased_bilinear(tmp_path: Path, image_backbone: Any) -> None:
    files = make_folder(tmp_path / "imgs", {"a": 2, "b": 2}, size=(48, 32))  # wide: shorter side 32 -> 16, crop 24x16
    data = build_data(ImageFolderDataSpec(train="imgs", split={"validation": 0.0}), image_backbone, tmp_path, seed=0)
    example = data.train[0]
    raw = files[data.train.items[0]].float().unsqueeze(0)
    resized = F.interpolate(raw, size=(16, 24), mode="bilinear", antialias=True, align_corners=False)[0]
    want = normalise(resized.round().clamp(0, 255)[:, :, 4:20] / 255, image_backbone.preprocessing)
    # torchvision resizes uint8 with its own rounding: a difference of one grey level, scaled by 1/std.
    torch.testing.assert_close(example["pixels"], want, atol=1.01 / 255 / 0.2, rtol=0)


def test_image_csv_relative_paths_and_missing_image(tmp_path: Path, image_backbone: Any) -> None:
    for i in range(6):
        save_image(tmp_path / "pics" / f"{i}.png", i)
    (tmp_path / "data").mkdir()
    rows = [{"path": f"../pics/{i}.png", "label": "odd" if i % 2 else "even"} for i in range(6)]
    write_csv(tmp_path / "data" / "train.csv", rows)
    data = build_data(ImageCsvDataSpec(train="data/train.csv", split={"validation": 0.34}), image_backbone, tmp_path,
                      seed=0)
    assert data.labels == ["even", "odd"] and len(data.train) + len(data.validation) == 6
    write_csv(tmp_path / "data" / "train.csv", [*rows, {"path": "gone.png", "label": "odd"}])
    with pytest.raises(DataError) as err:
        build_data(ImageCsvDataSpec(train="data/train.csv"), image_backbone, tmp_path, seed=0)
    assert str(err.value) == (f"data.train: {tmp_path / 'data/train.csv'} line 8, column 'path': image not found: "
                              f"{tmp_path / 'data/gone.png'}; paths are relative to the CSV's folder {tmp_path / 'data'}")


def test_unreadable_image_names_the_file(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 3, "b": 3})
    bad = tmp_path / "imgs" / "a" / "broken.png"
    bad.write_bytes(b"not a png at all")
    data = build_data(ImageFolderDataSpec(train="imgs", split={"validation": 0.0}), image_backbone, tmp_path, seed=0)
    with pytest.raises(DataError, match=rf"^data.train: cannot read image {bad} \(UnidentifiedImageError: .*\); "
                                        r"replace or remove the file$"):
        list(data.make_loader("train", 2))


def test_folder_layout_errors(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 2})
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "imgs" / "b" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        build_data(ImageFolderDataSpec(train="imgs"), image_backbone, tmp_path, seed=0)
    assert str(err.value).startswith(f"data.train: class folder {tmp_path / 'imgs/b'} has no images (got none with "
                                     "extension .jpg, .jpeg, .png")
    save_image(tmp_path / "flat" / "x.png", 0)
    with pytest.raises(DataError, match=r"has no class subfolders \(got 1 files at the top\); put each class's"):
        build_data(ImageFolderDataSpec(train="flat"), image_backbone, tmp_path, seed=0)
    with pytest.raises(DataError, match=r"^data.train: no such folder '.*missing' \(got 'missing'\); fix the path"):
        build_data(ImageFolderDataSpec(train="missing"), image_backbone, tmp_path, seed=0)


def test_augmentation_is_random_on_train_only(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 4, "b": 4}, size=(24, 24))
    spec = ImageFolderDataSpec(train="imgs", split={"validation": 0.25}, augment={"random_resized_crop": True,
                                                                                  "hflip": True})
    data = build_data(spec, image_backbone, tmp_path, seed=0)
    assert not data.deterministic
    torch.manual_seed(0)
    draws = [data.train[0]["pixels"] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(data.validation[0]["pixels"], data.validation[0]["pixels"])
    plain = build_data(ImageFolderDataSpec(train="imgs", split={"validation": 0.25}), image_backbone, tmp_path, seed=0)
    assert plain.fingerprint() != data.fingerprint()


def test_image_data_needs_an_image_backbone(tmp_path: Path) -> None:
    make_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    with pytest.raises(PlanError, match=r"^data.kind: image_folder data needs an image backbone \(got a text"):
        build_data(ImageFolderDataSpec(train="imgs"), SimpleNamespace(modality="text"), tmp_path, seed=0)


def test_predict_on_a_flat_folder(tmp_path: Path, image_backbone: Any) -> None:
    for i in range(3):
        save_image(tmp_path / "new" / f"{i}.png", i)
    bundle = load_file(ImageFolderDataSpec(train="x"), image_backbone, tmp_path / "new", ["a", "b"],
                       require_labels=False)
    batch = next(iter(bundle.make_loader("test", 8)))
    assert batch["pixels"].shape == (3, 3, 16, 16) and batch["labels"].tolist() == [-1, -1, -1]


def test_sklearn_digits_resized_three_channels_normalised(image_backbone: Any) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    data = build_data(DigitsDataSpec(image_size=24, split={"validation": 0.1, "test": 0.1}), image_backbone, None, 0)
    assert data.labels == [str(i) for i in range(10)]
    assert len(data.train) + len(data.validation) + len(data.test) == 1797
    assert len(data.test) == 180 and data.deterministic
    example = data.test[5]
    item = data.test.items[5]
    raw = torch.tensor(digits.images[item], dtype=torch.float32).view(1, 1, 8, 8) / 16
    resized = F.interpolate(raw, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)[0]
    want = normalise(resized.expand(3, -1, -1), image_backbone.preprocessing)
    torch.testing.assert_close(example["pixels"], want, atol=1e-5, rtol=0)
    assert data.labels[example["label"]] == str(digits.target[item])
    small = build_data(DigitsDataSpec(limit=200), image_backbone, None, 0)
    assert len(small.train) + len(small.validation) == 200 and small.fingerprint() != data.fingerprint()


def test_fingerprint_follows_image_bytes(tmp_path: Path, image_backbone: Any) -> None:
    make_folder(tmp_path / "imgs", {"a": 3, "b": 3})
    spec = ImageFolderDataSpec(train="imgs", split={"validation": 0.0})
    base = build_data(spec, image_backbone, tmp_path, seed=0).fingerprint()
    assert build_data(spec, image_backbone, tmp_path, seed=1).fingerprint() == base
    save_image(tmp_path / "imgs" / "a" / "0.png", 999)  # same name, new pixels
    assert build_data(spec, image_backbone, tmp_path, seed=0).fingerprint() != base
