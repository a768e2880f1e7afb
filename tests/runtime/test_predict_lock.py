"""Run directory locks: `ftengine predict` shares it as eval does; a file where the folder should be is one line."""

from __future__ import annotations

import pytest

import ftengine.runtime.finished_run as finished_run
from ftengine.errors import RunError
from ftengine.runtime.lock import RunDirLock, lock_path


def test_predict_fails_at_once_while_a_run_writes_the_folder(tmp_path):
    run_dir = tmp_path / "runs" / "toy"
    run_dir.mkdir(parents=True)
    with RunDirLock(run_dir, "ftengine run"), pytest.raises(RunError) as err:
        finished_run.predict_run(run_dir, tmp_path / "new.csv")  # fails before it reads the run or the input
    assert str(err.value).startswith(f"{run_dir}: in use by ftengine run (pid ")
    assert err.value.exit_code == 1


def test_a_run_cannot_start_while_predict_reads(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "toy"
    run_dir.mkdir(parents=True)
    seen: list[str] = []

    def predict_while_a_run_starts(*args, **kwargs):
        with pytest.raises(RunError, match=r"in use by ftengine predict \(pid "), RunDirLock(run_dir, "ftengine run"):
            pass
        seen.append("writer refused")
        with RunDirLock(run_dir, "ftengine eval", shared=True):  # another reader: allowed
            seen.append("reader")
        return tmp_path / "out.csv"

    monkeypatch.setattr(finished_run, "_predict_run", predict_while_a_run_starts)
    assert finished_run.predict_run(run_dir, tmp_path / "new.csv") == tmp_path / "out.csv"
    assert seen == ["writer refused", "reader"]
    assert not lock_path(run_dir).exists()  # released (and removed) afterwards


@pytest.mark.parametrize("where", ["afile", "afile/below"])
def test_an_output_dir_that_is_a_file_is_a_one_line_run_error(tmp_path, where):
    (tmp_path / "afile").write_text("not a folder")
    run_dir = tmp_path / where / "run"
    with pytest.raises(RunError, match=r": not a folder, so it cannot hold the run directory .*set output.dir to a "
                                       r"folder, or move the file$") as err, RunDirLock(run_dir, "ftengine run"):
        pass
    assert err.value.exit_code == 1
