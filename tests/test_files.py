"""Atomic writes: temporaries of killed writers are cleaned up, never those of a live one."""

import os
import subprocess
import sys

from vnrecon.files import atomic_write, write_text


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "table.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    orphan = tmp_path / f".table.csv.{dead.stdout.strip()}.abc123.tmp"
    live = tmp_path / f".table.csv.{os.getppid()}.def456.tmp"  # the test runner's parent is alive
    other = tmp_path / f".other.csv.{dead.stdout.strip()}.ghi789.tmp"  # another target's: not ours to touch
    for path in (orphan, live, other):
        path.write_text("partial")
    write_text(target, "a,b\n")
    assert target.read_text() == "a,b\n"
    assert not orphan.exists() and live.exists() and other.exists()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    try:
        with atomic_write(target) as temporary:
            temporary.write_text("new, half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]
