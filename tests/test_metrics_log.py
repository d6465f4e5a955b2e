"""MetricsLog: metrics.jsonl, TensorBoard event files, resume truncation and the W&B hook."""

from __future__ import annotations

import json
import math
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mimic_mjx.errors import ConfigError
from mimic_mjx.training.logging import MetricsLog, truncate_metrics

METRICS = [
    {"reward/total": 1.5, "error/joint_deg": 12.0, "loss/policy": float("nan")},
    {"reward/total": np.float32(2.5), "error/joint_deg": 10.0, "loss/policy": 0.25},
    {"reward/total": 3.5, "error/joint_deg": float("inf"), "loss/policy": 0.125},
]


def _log_three(run_dir: Path, **kw) -> None:
    with MetricsLog(run_dir, **kw) as mlog:
        for i, m in enumerate(METRICS, start=1):
            mlog.log(i, i * 100, m)


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _read_events(path: Path) -> list:
    """Parse a TFRecord file of Event protos (length u64, masked crc u32, payload, crc u32)."""
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    events, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        pos += 12
        ev = Event()
        ev.ParseFromString(data[pos : pos + length])
        events.append(ev)
        pos += length + 4
    assert pos == len(data)
    return events


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    out: dict[str, list[tuple[int, float]]] = {}
    for f in files:
        for ev in _read_events(f):
            if ev.HasField("summary"):
                for v in ev.summary.value:
                    out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def test_jsonl_lines_with_nan_as_null(tmp_path):
    _log_three(tmp_path)
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    lines = _read_lines(tmp_path / "metrics.jsonl")
    assert len(lines) == 3
    assert lines[0] == {
        "update": 1,
        "env_steps": 100,
        "reward/total": 1.5,
        "error/joint_deg": 12.0,
        "loss/policy": None,
    }
    assert lines[1]["reward/total"] == 2.5 and lines[1]["loss/policy"] == 0.25
    assert lines[2]["error/joint_deg"] is None and lines[2]["update"] == 3


def test_tensorboard_scalars_read_back(tmp_path):
    _log_three(tmp_path)
    sc = _scalars(tmp_path)
    assert set(sc) == {"reward/total", "error/joint_deg", "loss/policy"}
    assert sc["reward/total"] == [(100, 1.5), (200, 2.5), (300, 3.5)]
    # Non-finite values are skipped.
    assert sc["loss/policy"] == [(200, 0.25), (300, 0.125)]
    assert sc["error/joint_deg"] == [(100, 12.0), (200, 10.0)]


def test_tensorboard_off(tmp_path):
    _log_three(tmp_path, tensorboard=False)
    assert not (tmp_path / "tensorboard").exists()
    assert len(_read_lines(tmp_path / "metrics.jsonl")) == 3


def test_resume_drops_later_lines(tmp_path):
    _log_three(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"update": 4, "env_st')  # half-written line of a killed run
    with MetricsLog(tmp_path, resume_from_update=1) as mlog:
        assert [r["update"] for r in _read_lines(tmp_path / "metrics.jsonl")] == [1]
        mlog.log(2, 200, {"reward/total": 9.0})
    lines = _read_lines(tmp_path / "metrics.jsonl")
    assert [(r["update"], r["reward/total"]) for r in lines] == [(1, 1.5), (2, 9.0)]
    # The resumed writer marks the superseded steps for TensorBoard to purge.
    purges = [
        ev.step
        for f in (tmp_path / "tensorboard").glob("events.*")
        for ev in _read_events(f)
        if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START
    ]
    assert purges == [200]


def test_truncate_metrics_function(tmp_path):
    path = tmp_path / "metrics.jsonl"
    truncate_metrics(path, 3)  # no file: nothing to do
    assert not path.exists()
    path.write_text("".join(json.dumps({"update": u}) + "\n" for u in range(1, 6)))
    truncate_metrics(path, 3)
    assert [r["update"] for r in _read_lines(path)] == [1, 2, 3]


def test_wandb_missing_raises_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    with pytest.raises(ConfigError, match="pip install"):
        MetricsLog(tmp_path, wandb=True)


class _FakeRun:
    def __init__(self, kwargs):
        self.kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data, step):
        self.logged.append((step, dict(data)))

    def finish(self):
        self.finished = True


def test_wandb_logs_and_resumes_same_run(tmp_path, monkeypatch):
    runs = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: runs.append(_FakeRun(kw)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)

    _log_three(
        tmp_path, tensorboard=False, wandb=True, wandb_project="proj", wandb_run_name="r1", config={"name": "tiny"}
    )
    run = runs[0]
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    assert run.kwargs == {
        "project": "proj",
        "name": "r1",
        "config": {"name": "tiny"},
        "dir": str(tmp_path),
        "resume": "allow",
        "id": run_id,
    }
    assert run.finished
    assert [s for s, _ in run.logged] == [100, 200, 300]
    assert run.logged[0][1] == {"reward/total": 1.5, "error/joint_deg": 12.0}  # NaN skipped
    assert all(math.isfinite(v) for _, d in run.logged for v in d.values())

    with MetricsLog(tmp_path, tensorboard=False, wandb=True, resume_from_update=2):
        pass
    assert runs[1].kwargs["id"] == run_id and runs[1].finished
