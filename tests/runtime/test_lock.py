"""One writer per run directory: a second run fails at once naming the first; stale locks are taken over."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ftengine.errors import RunError
from ftengine.runtime import lock as lock_module
from ftengine.runtime.lock import RunDirLock, lock_path

HOLDER = """
import sys, time
from ftengine.runtime.lock import RunDirLock
lock = RunDirLock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture()
def holder():
    """`holder(run_dir, command, shared=False)`: a second process that holds the lock until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(run_dir, command: str = "ftengine run", shared: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), command, "shared" if shared else "x"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_fails_at_once_naming_the_first(toy_run, tmp_path, holder):
    run_dir = tmp_path / "runs" / "toy"
    first = holder(run_dir)
    started = time.perf_counter()
    with pytest.raises(RunError) as err:
        toy_run("toy")
    assert time.perf_counter() - started < 30  # fails at once, does not wait for the lock (generous bound)
    assert err.value.exit_code == 1  # a failed run, not a bad spec
    message = str(err.value)
    assert message.startswith(f"{run_dir}: in use by ftengine run (pid {first.pid} on {socket.gethostname()}, since ")
    assert message.endswith(f"(lock file {lock_path(run_dir)}); wait for it to finish, or choose another output.name")
    assert not (run_dir / "metrics.jsonl").exists()  # the second run wrote nothing
    first.kill()
    first.wait()
    assert toy_run("toy").metrics["epochs_run"] == 4  # the kernel dropped the dead holder's lock
    assert not lock_path(run_dir).exists()  # released and removed at the end


def test_resume_and_eval_readers_are_excluded_too(toy_run, tmp_path, holder):
    run_dir = toy_run("toy").run_dir
    reader = holder(run_dir, "ftengine eval", shared=True)
    with pytest.raises(RunError, match=rf"in use by ftengine eval \(pid {reader.pid} on "):
        toy_run("toy", resume=True)
    with RunDirLock(run_dir, "ftengine eval", shared=True):  # readers share
        pass
    reader.kill()
    reader.wait()
    writer = holder(run_dir, "ftengine run --resume")
    with pytest.raises(RunError, match=rf"in use by ftengine run --resume \(pid {writer.pid} on .*\(lock file .*"
                                       r"\.toy\.lock\); wait for it to finish$"), \
            RunDirLock(run_dir, "ftengine eval", shared=True):
        pass


def test_stale_lock_file_of_a_dead_run_is_taken_over(toy_run, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "toy"
    pid = _dead_pid()
    run_dir.parent.mkdir(parents=True)
    lock_path(run_dir).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": "ftengine run",
                                              "started": time.time() - 3600}))
    assert toy_run("toy").metrics["epochs_run"] == 4
    err = capsys.readouterr().err
    assert f"took over the stale lock of ftengine run (pid {pid} on {socket.gethostname()}, since " in err
    assert not lock_path(run_dir).exists()


def test_lock_is_released_when_the_run_fails(toy_run, tmp_path, monkeypatch):
    from ftengine.runtime.loop import Trainer

    def crash(self):
        raise RuntimeError("killed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "fit", crash)
        with pytest.raises(RuntimeError, match="killed"):
            toy_run("toy")
    assert not lock_path(tmp_path / "runs" / "toy").exists()
    with RunDirLock(tmp_path / "runs" / "toy", "ftengine run"):
        pass


def test_without_flock_the_owner_pid_decides(tmp_path, monkeypatch, holder):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    run_dir = tmp_path / "run"
    path = lock_path(run_dir)
    path.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "command": "ftengine run",
                                "started": time.time()}))  # a live process on this host
    with pytest.raises(RunError, match=rf"in use by ftengine run \(pid {os.getppid()} on "):
        RunDirLock(run_dir, "ftengine run").acquire()
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "command": "ftengine run",
                                "started": time.time()}))
    with RunDirLock(run_dir, "ftengine run") as taken:
        assert taken.note and "took over the stale lock" in taken.note
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_lock_file_sits_beside_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lock_path(tmp_path / "runs" / "sst2") == tmp_path / "runs" / ".sst2.lock"
    assert lock_path("runs/sst2/") == tmp_path / "runs" / ".sst2.lock"
    with RunDirLock(tmp_path / "missing", "ftengine eval", shared=True):  # nothing to read: no lock, no folder made
        assert not (tmp_path / ".missing.lock").exists()
