"""Multi-process training: one writer, one restored step, one shared stop.

Two `mimic train` processes on this machine (CPU, one device each) join one
run through a localhost coordinator, as two machines would on a shared file
system. Each process is its own Python (the process count is fixed when JAX
starts).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_config_dict
from mimic_mjx.data.clips import write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.training.verify import MANIFEST

PER_UPDATE = 32  # tiny config: 8 envs x 4 steps
# Process 1 sees the newest checkpoint as damaged (as a node whose view of a
# network file system lags would): it must still restore the step process 0 chose.
STALE_VIEW = """
from mimic_mjx.training import checkpoint as _ck
_real = _ck.manifest_problem
def _lagging(step_dir):
    newest = max(int(p.name) for p in step_dir.parent.iterdir() if p.name.isdigit())
    return "stale view" if int(step_dir.name) == newest else _real(step_dir)
_ck.manifest_problem = _lagging
"""


# What process 1 writes, deletes or renames under the run folder (through Python: orbax's
# metadata and renames, metrics, TensorBoard, config, provenance, manifests), dumped at exit.
# The output-location check's probe (created and removed at once by every command) is not a write.
WATCH = """
import atexit, json, os, sys
_run, _seen = os.path.realpath({run!r}), []
_EVENTS = ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "shutil.move")
def _audit(event, args):
    if event == "open":
        if not (args[2] or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            return
        paths = args[:1]
    elif event in _EVENTS:
        paths = args[:2] if event in ("os.rename", "shutil.move") else args[:1]
    else:
        return
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(p))
            if (full + os.sep).startswith(_run + os.sep) and ".mimic-write-check." not in full:
                _seen.append(event + " " + full)
def _dump():
    with open({out!r}, "w") as f:
        json.dump(_seen, f)
atexit.register(_dump)
sys.addaudithook(_audit)
"""


def _watch(tmp_path: Path, run: Path, tag: str) -> tuple[str, Path]:
    out = tmp_path / f"{tag}.writes.json"
    return WATCH.format(run=str(run), out=str(out)), out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "train.h5"
    write_clips(path, make_reaching_clips(3, seed=7, num_frames=30))
    return path


def _config(tmp_path: Path, updates: int, checkpoint_every: int) -> Path:
    d = tiny_config_dict()
    d["env"] = {"backend": "native", "native_threads": 1}
    d["train"].update(total_steps=updates * PER_UPDATE, checkpoint_every_updates=checkpoint_every)
    path = tmp_path / f"config_{updates}.json"
    path.write_text(json.dumps(d))
    return path


def _launch(tmp_path: Path, argv: list[str], tag: str, preludes=("", "")) -> list[tuple[subprocess.Popen, Path]]:
    """Start process 0 and 1 of one `mimic train` run; stdout/stderr go to files (read while they run)."""
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "JAX_NUM_CPU_DEVICES": "1",
            "MIMIC_COORDINATOR": f"127.0.0.1:{port}",
            "MIMIC_NUM_PROCESSES": "2",
            "MIMIC_PROCESS_ID": str(pid),
        }
        code = f"{preludes[pid]}\nimport sys\nfrom mimic_mjx.cli.main import main\nsys.exit(main({argv!r}))"
        out, err = tmp_path / f"{tag}.{pid}.out", tmp_path / f"{tag}.{pid}.err"
        with open(out, "w") as fo, open(err, "w") as fe:
            procs.append((subprocess.Popen([sys.executable, "-c", code], stdout=fo, stderr=fe, env=env), err))
    return procs


def _finish(procs, timeout: float = 240.0) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; a process still running after ``timeout`` is killed."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc, _ in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, err in procs:
        results.append((proc.returncode, err.with_suffix(".out").read_text(), err.read_text()))
    hung = [i for i, (proc, _) in enumerate(procs) if results[i][0] in (-signal.SIGKILL,)]
    assert not hung, f"process(es) {hung} did not finish within {timeout:g} s:\n" + "\n".join(
        f"--- process {i}:\n{r[2][-2500:]}" for i, r in enumerate(results)
    )
    return results


def _wait_for_line(err: Path, pattern: str, procs, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(re.search(pattern, line) for line in err.read_text().splitlines()):
            return
        if any(p.poll() is not None for p, _ in procs):
            break
        time.sleep(0.2)
    for p, _ in procs:
        p.kill()
    pytest.fail(f"no line matching {pattern!r} in {err.name}:\n{err.read_text()[-3000:]}")


def _skip_without_gloo(results) -> None:
    if any("gloo" in r[2].lower() and "unavailable" in r[2].lower() for r in results):
        pytest.skip("JAX's gloo CPU collectives are unavailable in this jaxlib")


def _steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


def _logged_updates(run: Path) -> list[int]:
    return [json.loads(line)["update"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _events(run: Path) -> list[Path]:
    return sorted((run / "tensorboard").glob("events.out.tfevents.*"))


def _scalar_steps(run: Path, tag: str = "reward/total") -> list[int]:
    """The global steps of ``tag`` over every event file (TFRecord: length, its CRC, an Event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    steps = []
    for path in _events(run):
        data, at = path.read_bytes(), 0
        while at < len(data):
            n = int.from_bytes(data[at : at + 8], "little")
            event = Event.FromString(data[at + 12 : at + 12 + n])
            steps += [event.step for v in event.summary.value if v.tag == tag]
            at += 12 + n + 4
    return sorted(steps)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, clip_file):
    """A two-process run with a checkpoint every 2 updates, stopped by SIGTERM to process 1 after update 3."""
    tmp = tmp_path_factory.mktemp("stopped")
    run = tmp / "run"
    cfg = _config(tmp, updates=100_000, checkpoint_every=2)  # far more updates than the test waits for
    argv = ["train", "--config", str(cfg), "--clips", str(clip_file), "--run-dir", str(run)]
    watch, writes = _watch(tmp, run, "first")
    procs = _launch(tmp, argv, "first", preludes=("", watch))
    _wait_for_line(procs[1][1], r"^update 3/", procs)
    procs[1][0].send_signal(signal.SIGTERM)
    results = _finish(procs, timeout=90)
    _skip_without_gloo(results)
    return run, results, json.loads(writes.read_text())


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_after_one_save_by_one_writer(stopped_run):
    run, results, writes = stopped_run
    # Both stop at the same update, as a single process stops for SIGTERM (143: "preempted").
    assert [r[0] for r in results] == [143, 143], [r[2][-2000:] for r in results]
    stopped = [re.search(r"stopped by SIGTERM at update (\d+); resume with", r[2]) for r in results]
    assert all(stopped), [r[2][-2000:] for r in results]
    n = int(stopped[0].group(1))
    assert n >= 3 and int(stopped[1].group(1)) == n
    assert [json.loads(r[1].strip().splitlines()[-1])["stopped_by"] for r in results] == ["SIGTERM"] * 2
    assert "in 2 processes" in results[0][2]
    # One set of writes: process 1 wrote nothing in the run folder; each update logged once, one event
    # file, one provenance line; one checkpoint per save (every 2 updates, and the stop's own at n).
    assert writes == []
    assert _logged_updates(run) == list(range(1, n + 1))
    assert len(_events(run)) == 1 and _scalar_steps(run) == [PER_UPDATE * u for u in range(1, n + 1)]
    assert len((run / "provenance.jsonl").read_text().splitlines()) == 1
    saves = sorted(set(range(2, n + 1, 2)) | {n})[-3:]  # the newest 3 are kept
    assert _steps(run) == saves and all((run / "checkpoints" / str(s) / MANIFEST).is_file() for s in saves)


@pytest.mark.slow
def test_resume_restores_the_same_step_in_every_process(stopped_run, tmp_path):
    stopped, results, _ = stopped_run
    n = int(re.search(r"stopped by SIGTERM at update (\d+)", results[0][2]).group(1))
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    # Process 1 sees update n as damaged (a lagging view): it must restore update n as process 0 does.
    argv = ["train", "--run-dir", str(run), "--resume", "--set", f"train.total_steps={(n + 2) * PER_UPDATE}"]
    watch, writes = _watch(tmp_path, run, "resume")
    results = _finish(_launch(tmp_path, argv, "resume", preludes=("", STALE_VIEW + watch)))
    for rc, _out, err in results:
        assert rc == 0, err[-3000:]
    for pid, (_, _, err) in enumerate(results):
        assert re.search(rf"^resumed from update {n} \(", err, re.M), f"process {pid}:\n{err[-3000:]}"
        assert "damaged" not in err, err[-3000:]
    assert [json.loads(r[1].strip().splitlines()[-1])["updates"] for r in results] == [n + 2, n + 2]
    assert json.loads(writes.read_text()) == []
    assert _logged_updates(run) == list(range(1, n + 3))
    assert _steps(run)[-1] == n + 2 and not (run / "damaged_checkpoints").exists()
    assert len(_events(run)) == 2 and _scalar_steps(run) == [PER_UPDATE * u for u in range(1, n + 3)]
    assert len((run / "provenance.jsonl").read_text().splitlines()) == 2
    # A checkpoint written in a two-process run reads in one process.
    from mimic_mjx.training.checkpoint import load_policy

    assert load_policy(run).update == n + 2
