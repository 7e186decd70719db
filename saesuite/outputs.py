"""Output folders: created and checked before the work, held by one run at a time, written atomically.

* :func:`prepare_output_dir` creates a folder (and its parents) and checks it is writable, or
  raises :class:`ConfigError` naming the path in the way, before any computing starts.
* :func:`output_lock` takes an exclusive lock on a folder (or on one part of it, such as one cache
  shard) for the time a run writes there. The lock is ``flock(2)`` on a hidden file in the folder
  that records the holder's PID and host: a second run is refused with :class:`BusyError` naming
  them. The kernel drops the lock when its process ends, however it ends, so a lock left by a
  killed run never blocks a rerun; the lock file is removed on release. Taking a lock also removes
  the temporary files that killed runs left in its scope (nobody else writes there while it is
  held). Within one process the lock is re-entrant.
* :func:`atomic_path` gives a unique temporary name beside a file (``NAME.<pid>-<random>.tmp``)
  and renames it over the file once written, so two writers never share a temporary file and a
  reader never sees half a file.

Lock and temporary files exist only while a run writes, so a finished run's folders hold exactly
the files they held before locks were taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from saesuite.errors import BusyError, ConfigError

try:  # POSIX; the suite's targets (Linux workstations, GPU servers, SLURM clusters) all have it
    import fcntl
except ImportError:  # pragma: no cover - Windows: folders are not locked
    fcntl = None

LOCK_NAME = ".saesuite.lock"
_TEMP = re.compile(r"^(?P<base>.+)\.(?P<tag>\d+-[0-9a-f]{8})\.tmp$")
# flock(2) is not supported (some network or parallel file systems mounted without it)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_held: dict[Path, list] = {}  # lock file -> [fd or None, depth]: this process's locks
_guard = threading.Lock()


def prepare_output_dir(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) and check it is writable; return it.

    Raises :class:`ConfigError` with the path in the way (a file where a folder must go, no
    permission), so a run fails on its output path before computing anything.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = _file_in_the_way(path)
        why = f"{blocker} is a file, not a folder" if blocker else f"{err.strerror} ({err.filename or path})"
        raise ConfigError(f"output folder {path} cannot be created: {why}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {path} is not writable by this user")
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The first of ``path`` and its ancestors that exists but is not a folder, if any."""
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def temp_path(path: str | Path) -> Path:
    """A temporary name beside ``path`` that no other writer uses: ``NAME.<pid>-<8 hex>.tmp``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; once the block has written it, rename it over
    ``path`` (atomic on one file system). On an error the temporary file is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (``0o644`` under umask 022)."""
    umask = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    if umask is None:  # not Linux: read it by setting it (and putting it back at once)
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def output_lock(folder: str | Path, name: str = LOCK_NAME,
                owns: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Hold the output folder ``folder`` (created if needed) exclusively for the block; yield it.

    ``name`` is the lock file's name: the default covers the whole folder; a part of a folder
    written by separate jobs (a cache shard) takes its own name. ``owns(file_name)`` says which
    temporary files of the folder belong to this lock's scope (default: all); those left by a
    killed run are removed once the lock is held. Raises :class:`BusyError` naming the holder
    when another process holds the lock. On a file system without ``flock`` the block runs
    unlocked, with a warning on stderr.
    """
    folder = prepare_output_dir(folder)
    lock = folder.resolve() / name
    with _guard:
        entry = _held.get(lock)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        fd = _acquire(lock)
        with _guard:
            _held[lock] = entry = [fd, 1]
        _remove_stale_temps(folder, owns)
    try:
        yield folder
    finally:
        with _guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[lock]
        if last:
            _release(lock, entry[0])


def _acquire(lock: Path) -> int | None:
    """Lock ``lock`` (created if needed) and write the holder into it; return its descriptor."""
    if fcntl is None:  # pragma: no cover
        return None
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BusyError(
                f"{lock.parent} is in use by another saesuite run ({holder}; lock file {lock.name}). Wait for it "
                "to finish or stop it, then rerun; a lock left by a killed run does not block (the system "
                "releases it when its process ends)."
            ) from None
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            print(f"saesuite: warning: the file system of {lock.parent} does not support flock ({err.strerror}); "
                  "writing there without a lock, so do not start two runs on this folder", file=sys.stderr)
            _write_holder(fd)
            return fd
        # the previous holder may have removed the file between our open and our lock: lock the file
        # that is at the path now, or another run could lock a second one
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _write_holder(fd)
            return fd
        os.close(fd)


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)


def _read_holder(fd: int) -> str:
    """``process PID on HOST`` from a held lock file (its holder writes it just after locking)."""
    for _ in range(20):
        text = os.pread(fd, 256, 0).decode(errors="replace").split()
        if len(text) >= 2:
            return f"process {text[0]} on {text[1]}"
        time.sleep(0.05)
    return "a process that has not yet written its PID"


def _release(lock: Path, fd: int | None) -> None:
    if fd is None:  # pragma: no cover
        return
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()  # while still locked: a waiting opener then finds the file gone and retries
    os.close(fd)


def _remove_stale_temps(folder: Path, owns: Callable[[str], bool] | None) -> None:
    """Remove the temporary files (:func:`temp_path` names) in ``folder`` that ``owns`` claims."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _TEMP.match(entry.name)
            if match and entry.is_file(follow_symlinks=False) and (owns is None or owns(match["base"])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

