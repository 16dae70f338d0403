"""Writing files so that nothing is ever half-written.

Every output of vnrecon (HDF5 data, checkpoints, caches, figures, CSV tables) is written to
a temporary file in the target's folder and renamed over the target only when
complete; on any error the temporary file is removed and an existing target is
left untouched. A process killed mid-write leaves its temporary file behind; the
temporary names carry the writer's pid, and the next write of the same target
removes those of writers that are no longer running.

A run folder that a training writes to is held with ``run_lock`` (an advisory
``flock``), so a second process refuses to write into it instead of racing it.
"""

import csv
import fcntl
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

LOCK = ".vnrecon.lock"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (fsynced, umask permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temporaries(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(temporary, path)
    except OSError as error:  # name the target the user asked for, not the hidden temporary
        raise OSError(error.errno, error.strerror or str(error).splitlines()[0], str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)


def write_csv(path: str | Path, rows, fieldnames) -> Path:
    """Write dict rows as CSV (header first) through ``atomic_write``; returns the path."""
    with atomic_write(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file through ``atomic_write``; returns the path."""
    with atomic_write(path) as temporary:
        Path(temporary).write_text(text)
    return Path(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_orphaned_temporaries(path: Path) -> None:
    """Temporary files of ``path`` whose writer (the pid in their name) no longer runs."""
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            candidate.unlink(missing_ok=True)


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process; another holder makes this an InputError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError(f"{folder}: another vnrecon process is writing to this folder; wait for it to finish or use another --out") from None
    try:
        yield folder
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_destination(path: str | Path, inputs=(), folder: bool = False) -> Path:
    """Refuse an output path before any work is done: an input file, an existing file where a folder
    is wanted (or the reverse), or a place this process cannot write. Returns the path."""
    path = Path(path)
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise InputError(f"{path}: is the input {source}; refusing to overwrite input data (give another output path)")
    if path.exists() and path.is_dir() != folder:
        raise InputError(f"{path}: is {'a file' if folder else 'a folder'}, expected {'a folder' if folder else 'a file path'}")
    existing = path if folder and path.exists() else existing_ancestor(path)
    if not existing.is_dir():
        raise InputError(f"{path}: cannot be created, {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write there ({existing} is not writable)")
    return path


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def existing_ancestor(path: str | Path) -> Path:
    """The nearest folder above ``path`` that exists (where it would be created)."""
    existing = Path(path).parent
    while not existing.exists():
        existing = existing.parent
    return existing


def check_free_space(path: str | Path, size: int) -> None:
    """Refuse to start writing ``size`` bytes where the disk cannot take them (a full disk mid-write
    can crash HDF5 itself)."""
    path = Path(path)
    free = shutil.disk_usage(existing_ancestor(path)).free
    if size > free:
        raise InputError(f"{path}: needs ~{size / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free on that disk")


def read_csv_rows(path: str | Path, columns=None) -> list[dict]:
    """Rows of a CSV table this program wrote; a damaged one (not text, ragged rows, other columns
    than ``columns``) is an InputError naming it, never a traceback or silently short rows."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            fields = tuple(reader.fieldnames or ())
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: damaged table ({str(error).splitlines()[0]}); delete it to recompute it") from None
    if columns is not None and fields != tuple(columns):
        raise InputError(f"{path}: damaged table (columns {list(fields)}, expected {list(columns)}); delete it to recompute it")
    if any(None in row or None in row.values() for row in rows):
        raise InputError(f"{path}: damaged table (a row has the wrong number of cells); delete it to recompute it")
    return rows
