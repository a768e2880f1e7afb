"""One writer per run directory: an advisory lock file beside it, naming its owner.

``runs/sst2`` is guarded by ``runs/.sst2.lock``. The lock lives *beside* the folder, not in it, because a run
that starts fresh deletes and recreates its folder (a lock inside would go with it, and a second run could
lock the new folder's file). The file holds the owner's pid, host, command and start time as JSON, so the
second run can say who holds it.

Locking is ``fcntl.flock``: the kernel drops the lock when its process dies, however it dies (kill -9
included), so a lock is never left held by a dead run on the same machine. A lock *file* left behind by a
dead owner is therefore harmless and is taken over (with a note). Where ``flock`` is unavailable (Windows,
some network filesystems) the file's contents decide: a live pid on this host holds it, a dead one is stale.

Readers (``ftengine eval``, ``ftengine predict``) take the lock shared: any number of them at once, but no run
starts writing while one reads, and no reader reads a folder that a run is rewriting.

A process that finds the lock taken does not wait: it fails at once with a `RunError` (exit status 1, a failed
run rather than a bad spec) naming the holder (command, pid, host, since when), the lock file and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftengine.errors import RunError

try:
    import fcntl
except ImportError:  # Windows: contents-only locking
    fcntl = None  # type: ignore[assignment]


def lock_path(run_dir: Path) -> Path:
    """``<parent>/.<name>.lock`` for ``<parent>/<name>`` (resolved, so ``.`` and ``runs/x/`` work)."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parent / f".{run_dir.name}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell: assume alive)
    return True


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    if not owner.get("pid"):
        return "another ftengine process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"{owner.get('command', 'ftengine')} (pid {owner['pid']} on {owner.get('host', '?')}, since {since})"


def _busy(run_dir: Path, path: Path, owner: dict[str, Any], fix: str) -> RunError:
    gone = owner.get("host") == socket.gethostname() and owner.get("pid") and not _pid_alive(int(owner["pid"]))
    hint = " (that process is gone, but a child it started still holds the lock: end it)" if gone else ""
    return RunError(f"{run_dir}: in use by {_describe(owner)}{hint} (lock file {path}); {fix}")


class RunDirLock:
    """Exclusive (a run) or shared (a reader) advisory lock on a run directory; use as a context manager.

    Args:
        run_dir: the run directory (need not exist yet).
        command: what holds it, shown to whoever finds it taken (``ftengine run``).
        shared: a reader's lock (``ftengine eval``, ``predict``): many at once, none while a run writes.
    """

    def __init__(self, run_dir: str | Path, command: str, *, shared: bool = False) -> None:
        self.run_dir, self.command, self.shared = Path(run_dir), command, shared
        self.path = lock_path(self.run_dir)
        self.note: str | None = None  # set when a stale lock file was taken over
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        """Take the lock or fail at once.

        Raises:
            RunError: another process holds it (the message names it: command, pid, host, since when), or the
                folder that should hold the run directory cannot be made (a file is in the way, no permission).
        """
        if self.shared and not self.run_dir.is_dir():
            return self  # nothing to read: the reader fails with its own message, and no folder is created
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # output.dir (or a folder above it) names a regular file
            raise RunError(f"{self.run_dir.parent}: not a folder, so it cannot hold the run directory (got a file "
                           "there or above it); set output.dir to a folder, or move the file") from None
        except OSError as exc:
            raise RunError(f"{self.run_dir.parent}: cannot create the folder for the run directory "
                           f"({exc.strerror}); set output.dir to a folder you can write") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                held = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if not held:
                os.close(fd)
                fix = "wait for it to finish" + ("" if self.shared else ", or choose another output.name")
                raise _busy(self.run_dir, self.path, _read_owner(self.path), fix)
            # The previous owner may have unlinked the file between our open and our flock: lock the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self._claim(fd)
        return self

    def _flock(self, fd: int) -> bool:
        """True when the lock is ours; False when another process holds it."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError:  # no flock on this filesystem: fall back to the file's contents
                pass
        owner = _read_owner(self.path)
        if not owner.get("pid") or owner.get("pid") == os.getpid():
            return True
        return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner["pid"]))

    def _claim(self, fd: int) -> None:
        """Write our record (readers too, so that a run they block can name one of them)."""
        previous = _read_owner(self.path)
        # A writer deletes the file when it finishes: a writer's record still there means it died holding it.
        if not self.shared and previous.get("pid") not in (None, os.getpid()) and not previous.get("shared"):
            self.note = f"took over the stale lock of {_describe(previous)}, which did not release it"
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.time(), "shared": self.shared, "run_dir": str(self.run_dir.resolve())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)

    def release(self) -> None:
        """Drop the lock and delete the file when no one else holds it (unlinked while still locked, so that
        no one can lock the deleted file: a process that opened it before re-checks the inode and retries)."""
        if self._fd is None:
            return
        last = True
        if self.shared and fcntl is not None:
            try:  # the last reader out cleans up; converting drops our shared lock first, failing is fine
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                last = False
        if last:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked_run_dir(run_dir: str | Path, command: str, *, shared: bool = False) -> Iterator[RunDirLock]:
    """``with locked_run_dir(run_dir, "ftengine run"):`` the body writes ``run_dir`` alone (see `RunDirLock`).

    A stale lock file taken over is reported on stderr (one line).
    """
    with RunDirLock(run_dir, command, shared=shared) as lock:
        if lock.note:
            print(f"ftengine: {lock.path}: {lock.note}", file=sys.stderr, flush=True)
        yield lock
