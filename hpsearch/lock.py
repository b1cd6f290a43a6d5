"""One process per sweep name: ``RESULTS_DIR/NAME/sweep.lock``, held with ``flock`` for the sweep's life.

Two sweeps started at once with the same ``--name`` would both pass the "already exists" check (it
reads the directory before either has written to it) and mix into one directory. The lock makes the
claim atomic: the first process to ``flock`` the lock file owns the name; it then checks again, under
the lock, whether a sweep of that name already started. A second process (a new sweep or ``--resume``)
is refused in one line naming the holder's pid while the first runs. The kernel drops the lock when its
process ends, however it ends (SIGKILL included), so a killed sweep never leaves a stale lock.

The file is removed when the sweep ends. A process that opened it just before could then hold a lock on
a removed file, so :func:`claim` keeps a lock only when the file it locked is still the one at the path.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trainables.errors import SweepError, first_line, shell_command

LOCK_NAME = "sweep.lock"


class SweepLock:
    """A held claim on a sweep directory; :meth:`release` (or the process's end) gives it up."""

    def __init__(self, sweep_dir: Path, fd: int):
        self.sweep_dir, self.fd = sweep_dir, fd

    def release(self) -> None:
        """Give up the name: the lock file goes, and the sweep directory too if nothing else is in it."""
        if self.fd < 0:
            return
        try:
            (self.sweep_dir / LOCK_NAME).unlink(missing_ok=True)  # still under the lock: nobody else holds it
            self.sweep_dir.rmdir()  # only if empty (a sweep that failed before writing anything)
        except OSError:
            pass
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = -1

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(sweep_dir: Path, name: str, *, resume: bool) -> SweepLock:
    """Hold ``sweep_dir``'s lock (creating the directory), or a one-line SweepError naming the holder."""
    path = sweep_dir / LOCK_NAME
    for _ in range(10):  # retried only when the holder removed the file between our open and our lock
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            continue  # the holder removed the (empty) directory meanwhile
        except OSError as exc:
            raise SweepError(f"cannot create {path} ({first_line(exc, limit=200)}); the sweep directory must be "
                             "writable: check --results-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise SweepError(in_use(name, sweep_dir, holder, resume=resume)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return SweepLock(sweep_dir, fd)
        os.close(fd)
    raise SweepError(f"could not lock {path}: other processes keep creating and removing it; "
                     f"make sure only one hpsearch runs sweep '{name}'")


def held_by(sweep_dir: Path) -> str | None:
    """The holder's pid (text; '' if not yet written) when another process holds the sweep's lock, else None."""
    try:
        fd = os.open(sweep_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it (the shared lock goes with the close below)
    except OSError:
        return _holder(fd)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def in_use(name: str, sweep_dir: Path, holder: str, *, resume: bool) -> str:
    """The refusal: which sweep, which process, and what to do."""
    who = f"pid {holder}" if holder.isdigit() else "a process that is still starting"
    fix = ("wait for it to end (or stop it with Ctrl-C), then resume" if resume else
           f"choose another --name, or wait for it to end and run "
           f"`{shell_command('hpsearch', 'sweep', '--name', name, '--results-dir', sweep_dir.parent, '--resume')}`")
    return (f"sweep '{name}' is in use: another hpsearch process ({who}) is running it in {sweep_dir} and holds "
            f"{LOCK_NAME}; two sweeps of one name would mix into one directory: {fix}")
