"""A failed write (disk full, quota, read-only) raises a one-line error and keeps the previous file.

Full disks are simulated two ways: RLIMIT_FSIZE in a child process (with SIGXFSZ
ignored, writes past the limit fail with EFBIG, as a full disk fails with
ENOSPC), and, where this process may mount, a real 512 KiB tmpfs. Writers run
in a child process so that a crash (the HDF5 segfault of the original report)
shows as a negative return code instead of killing the test run.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from mimic_mjx.errors import MimicError, OutputError
from mimic_mjx.files import atomic_path, write_text

LIMIT = 64 * 1024  # bytes a child may write to one file; good files are smaller, new ones larger

_PRELUDE = """
import json, resource, signal, sys
from pathlib import Path
import h5py
import numpy as np
from mimic_mjx.errors import MimicError


def clip(frames):
    from mimic_mjx.data.clips import Clip
    t = np.linspace(0, 1, frames, dtype=np.float32)
    qpos = np.stack([np.sin(t), np.cos(t)], axis=1).astype(np.float32)
    return Clip(name="a", body="mouse_forelimb", fps=100.0, joint_names=("j0", "j1"), qpos=qpos, qvel=qpos * 0)


def limit_file_size(n):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
"""

# Each writes a small good file (mode "good") or a large one (mode "big") to sys.argv[2].
WRITERS = {
    "clips": """
from mimic_mjx.data.clips import write_clips
write_clips(out, [clip(10 if mode == "good" else 40_000)])
""",
    "hdf5_dataset": """
from mimic_mjx.files import atomic_path
with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
    n = 100 if mode == "good" else 200_000
    f.create_dataset("rollouts/qpos", data=np.arange(n, dtype=np.float64))
    f.attrs["kind"] = "rollouts"
""",
    "hdf5_in_memory": """
from mimic_mjx.files import atomic_hdf5
with atomic_hdf5(out) as f:
    n = 100 if mode == "good" else 200_000
    f.create_dataset("rollouts/qpos", data=np.arange(n, dtype=np.float64), fletcher32=True)
""",
    "json": """
from mimic_mjx.files import write_text
n = 10 if mode == "good" else 50_000
write_text(out, json.dumps({"values": list(range(n))}))
""",
}
SUFFIX = {"clips": ".h5", "hdf5_dataset": ".h5", "hdf5_in_memory": ".h5", "json": ".json"}


def _run(writer: str, out: Path, mode: str, limit: int | None = None) -> subprocess.CompletedProcess:
    body = textwrap.dedent(WRITERS[writer])
    script = (
        _PRELUDE
        + f"\nmode, out = {mode!r}, Path({str(out)!r})\n"
        + (f"limit_file_size({limit})\n" if limit else "")
        + "try:\n"
        + textwrap.indent(body, "    ")
        + "\nexcept MimicError as exc:\n    print(f'error: {exc}', file=sys.stderr)\n    sys.exit(2)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def _assert_clean_failure(proc: subprocess.CompletedProcess, out: Path, before: bytes) -> None:
    assert proc.returncode >= 0, f"the writer crashed (signal {-proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.returncode == 2, f"expected a handled error, got rc={proc.returncode}: {proc.stderr[-2000:]}"
    message = proc.stderr.strip()
    assert "Traceback" not in message and "\n" not in message, message
    assert message.startswith(f"error: could not write {out}: ") and "previous file is unchanged" in message
    assert out.read_bytes() == before, "the previous file was changed"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "a temporary file was left behind"


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_file_size_limit_keeps_previous_file(tmp_path, writer):
    out = tmp_path / f"out{SUFFIX[writer]}"
    proc = _run(writer, out, "good")
    assert proc.returncode == 0, proc.stderr
    before = out.read_bytes()
    assert 0 < len(before) < LIMIT
    _assert_clean_failure(_run(writer, out, "big", limit=LIMIT), out, before)
    assert _run(writer, out, "big").returncode == 0  # the same write succeeds without the limit


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_full_tmpfs_keeps_previous_file(small_tmpfs, writer):
    out = small_tmpfs / f"out{SUFFIX[writer]}"
    assert _run(writer, out, "good").returncode == 0
    before = out.read_bytes()
    # Fill the filesystem so that the new file cannot fit beside the old one.
    filler = small_tmpfs / "filler"
    with open(filler, "wb", buffering=0) as fh, pytest.raises(OSError) as full:
        while True:
            fh.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - 16 * 1024))  # room for the tmp file, not the data
    proc = _run(writer, out, "big")
    filler.unlink()
    _assert_clean_failure(proc, out, before)
    assert "No space left on device" in proc.stderr


def test_read_only_tmpfs(small_tmpfs):
    out = small_tmpfs / "out.json"
    write_text(out, "{}")
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, timeout=20)
    if done.returncode != 0:
        pytest.skip("cannot remount read-only")
    with pytest.raises(OutputError, match=r"could not write .*Read-only file system; .*choose a folder"):
        write_text(out, '{"new": 1}')
    assert out.read_text() == "{}"


# ---------------------------------------------------------------------------
# In-process failures of the steps after the writer: lost HDF5 writes, fsync, rename.


def _good_h5(path: Path) -> bytes:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(10.0))
    return path.read_bytes()


def test_hdf5_lost_writes_are_caught_before_the_rename(tmp_path):
    """HDF5 can lose write errors at close; a truncated file must not replace a good one."""
    out = tmp_path / "rollouts.h5"
    before = _good_h5(out)
    lost = r"could not write .*does not read back.*previous file is unchanged"
    with pytest.raises(OutputError, match=lost), atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("x", data=np.arange(100_000.0))
        os.truncate(tmp, tmp.stat().st_size // 2)  # what a silently failed write leaves
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_fsync_failure_keeps_previous_file(tmp_path, monkeypatch, code):
    out = tmp_path / "summary.json"
    out.write_text("old")

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError) as exc:
        write_text(out, "new")
    message = str(exc.value)
    assert "\n" not in message and os.strerror(code) in message and "previous file is unchanged" in message
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_failed_rename_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "clips.h5"
    before = _good_h5(out)

    def failing_replace(src, dst):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OutputError, match="could not write"), atomic_path(out) as tmp:
        _good_h5(tmp)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_parent_that_is_a_file(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"run is a file, not a folder"):
        write_text(blocker / "config.json", "{}")
    with pytest.raises(OutputError, match=r"run is a file, not a folder"):
        write_text(blocker / "deeper" / "config.json", "{}")
    assert blocker.read_text() == "not a folder"


def test_target_that_is_a_folder(tmp_path):
    (tmp_path / "out.h5").mkdir()
    with pytest.raises(OutputError, match="it is a folder"):
        write_text(tmp_path / "out.h5", "x")


def test_writer_errors_pass_through_and_leave_nothing(tmp_path):
    out = tmp_path / "clips.h5"
    with pytest.raises(ValueError, match="bad clip"), atomic_path(out):
        raise ValueError("bad clip")
    assert list(tmp_path.iterdir()) == []


def test_output_error_is_a_mimic_error_and_an_os_error(tmp_path):
    assert issubclass(OutputError, MimicError) and issubclass(OutputError, OSError)
    out = tmp_path / f"{uuid.uuid4().hex}.txt"
    write_text(out, "ok")
    assert out.read_text() == "ok" and oct(out.stat().st_mode & 0o777) != "0o600"
