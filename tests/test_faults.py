"""Faults a long training run meets: signals, damaged checkpoints, full disks, conflicting resumes."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import tiny_config_dict
from mimic_mjx import config as config_lib
from mimic_mjx.cli.main import main
from mimic_mjx.data.clips import read_clips, write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.errors import OutputError, RunDirError
from mimic_mjx.training import checkpoint as checkpoint_mod
from mimic_mjx.training.checkpoint import Checkpoints
from mimic_mjx.training.experiment import build_env
from mimic_mjx.training.ppo import PPOTrainer
from mimic_mjx.training.trainer import train
from mimic_mjx.training.verify import MANIFEST

SRC = Path(__file__).resolve().parents[1] / "src"
PER_UPDATE = 32  # tiny config: 8 envs x 4 steps


def _cfg(**train_values):
    d = tiny_config_dict()
    d["train"].update(train_values)
    return config_lib.from_dict(d)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "train.h5"
    write_clips(path, make_reaching_clips(3, seed=7, num_frames=30))
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, clip_file):
    """A finished run of 3 updates with a checkpoint after each."""
    run = tmp_path_factory.mktemp("base") / "run"
    train(_cfg(), run, read_clips(clip_file), log=lambda m: None)
    return run


@pytest.fixture
def run_copy(base_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(base_run, dest)
    return dest


def _state(run_dir, cfg, step=None):
    trainer = PPOTrainer(cfg, build_env(cfg, read_clips(run_dir / "train_clips.h5")))
    ck = Checkpoints(run_dir / "checkpoints", log=lambda m: None)
    try:
        return ck.restore(jax.eval_shape(trainer.init, jax.random.PRNGKey(0)), step)
    finally:
        ck.close()


def _steps(run_dir) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _flip_bytes(step_dir: Path) -> Path:
    target = max((p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    for i in (len(data) // 3, len(data) // 2, len(data) - 5):
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _spawn(tmp_path, clip_file, run_dir, prelude=""):
    """`mimic train` in a child process (with optional code run first), its stderr readable line by line."""
    cfg_file = tmp_path / "tiny.yaml"
    d = tiny_config_dict()
    # Far more updates than the test waits for; no periodic checkpoint, so any checkpoint comes from the signal.
    d["train"].update(total_steps=PER_UPDATE * 100_000, checkpoint_every_updates=100_000)
    cfg_file.write_text(json.dumps(d))
    argv = ["train", "--config", str(cfg_file), "--clips", str(clip_file), "--run-dir", str(run_dir)]
    code = f"{prelude}\nimport sys\nfrom mimic_mjx.cli.main import main\nsys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for(proc, pattern: str, timeout: float = 120.0) -> list[str]:
    lines, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    proc.kill()
    pytest.fail(f"no line matching {pattern!r} from the child; it wrote:\n{''.join(lines)}")


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resuming_is_exact(tmp_path, clip_file):
    run = tmp_path / "run"
    proc = _spawn(tmp_path, clip_file, run)
    _wait_for(proc, r"^update 2/")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    stopped = re.search(r"stopped by SIGTERM at update (\d+); resume with `mimic train --run-dir (.+) --resume`", err)
    assert stopped and stopped.group(2) == str(run), err
    n = int(stopped.group(1))
    assert n >= 2 and _steps(run) == [n]
    assert (run / "checkpoints" / str(n) / MANIFEST).is_file()
    assert json.loads(out.strip().splitlines()[-1])["stopped_by"] == "SIGTERM"

    # Resume to n + 2 updates; an uninterrupted run of n + 2 updates ends bit-identical.
    cfg = config_lib.apply_overrides(
        config_lib.from_dict(json.loads((run / "config.json").read_text())),
        [f"train.total_steps={(n + 2) * PER_UPDATE}"],
    )
    logs = []
    resumed = train(cfg, run, resume=True, log=logs.append)
    assert resumed["updates"] == n + 2 and resumed["stopped_by"] is None
    assert any("train.total_steps" in line and "->" in line for line in logs), logs  # budget change logged
    full = train(cfg, tmp_path / "full", read_clips(clip_file), log=lambda m: None)
    assert full["updates"] == n + 2
    _assert_same_state(_state(run, cfg), _state(tmp_path / "full", cfg))


@pytest.mark.slow
def test_sigint_during_compilation_exits_without_a_checkpoint(tmp_path, clip_file):
    # A slow first call stands in for a long XLA compilation; the signal lands inside it.
    prelude = """
import sys, time
from mimic_mjx.training import ppo
_init = ppo.PPOTrainer.__init__
def _slow_init(self, *a, **k):
    _init(self, *a, **k)
    fast, calls = self.update, []
    def update(state):
        if not calls:
            print("COMPILING", file=sys.stderr, flush=True)
            time.sleep(3)
        calls.append(1)
        return fast(state)
    self.update = update
ppo.PPOTrainer.__init__ = _slow_init
"""
    run = tmp_path / "run"
    proc = _spawn(tmp_path, clip_file, run, prelude)
    _wait_for(proc, "^COMPILING")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT during compilation" in err and "Traceback" not in err, err
    assert f"mimic train --run-dir {run} --resume" in err
    assert not (run / "checkpoints").exists() or _steps(run) == []
    # The advice works: the run, never checkpointed, starts again from its stored config and clips.
    cfg = config_lib.apply_overrides(
        config_lib.from_dict(json.loads((run / "config.json").read_text())), [f"train.total_steps={PER_UPDATE}"]
    )
    logs = []
    assert train(cfg, run, resume=True, log=logs.append)["updates"] == 1 and _steps(run) == [1]
    assert any("stopped before its first checkpoint" in line for line in logs), logs


@pytest.mark.slow
def test_damaged_newest_checkpoint_is_skipped_for_the_previous_one(run_copy, tmp_path):
    cfg = _cfg(total_steps=4 * PER_UPDATE)
    damaged = _flip_bytes(run_copy / "checkpoints" / "3")
    logs = []
    summary = train(cfg, run_copy, resume=True, log=logs.append)
    warning = next(line for line in logs if line.startswith("warning: checkpoint at update 3"))
    assert "does not match its checksum" in warning and damaged.name in warning
    assert any(line.startswith("resumed from update 2") for line in logs), logs
    assert summary["updates"] == 4 and summary["steps_this_run"] == 2 * PER_UPDATE
    state = _state(run_copy, cfg)
    assert int(state.updates) == 4
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.policy))
    # The damaged step is kept for inspection, out of the way of the new update 3.
    assert (run_copy / "damaged_checkpoints" / "3").is_dir() and 3 in _steps(run_copy)


@pytest.mark.slow
def test_missing_manifest_and_non_finite_parameters_count_as_damaged(run_copy, monkeypatch):
    cfg = _cfg()
    state = _state(run_copy, cfg)
    (run_copy / "checkpoints" / "3" / MANIFEST).unlink()  # as if killed between orbax and the manifest
    ck = Checkpoints(run_copy / "checkpoints", log=lambda m: None)
    bad = state.replace(policy=state.policy.replace(params=jax.tree.map(lambda x: x * np.nan, state.policy.params)))
    saved = []
    ck.log = saved.append
    assert ck.save(4, bad, {}) is False and _steps(run_copy) == [1, 2, 3]  # a diverged state is not saved
    assert "not written: NaN or inf in" in saved[0] and saved[0].endswith("the last good checkpoint is update 2")
    # Written anyway (as by an earlier version), with a valid manifest: readable but unusable.
    with monkeypatch.context() as m:
        m.setattr(checkpoint_mod, "non_finite", lambda tree: None)
        ck.save(4, bad, {})
    with pytest.raises(RunDirError, match="holds update 4"):
        ck.save(4, state, {})  # orbax would skip it silently
    logs = []
    ck.log = logs.append
    restored = ck.restore(state)
    ck.close()
    assert ck.restored_step == 2 and ck.skipped == [4, 3] and int(restored.updates) == 2
    assert "update 4" in logs[0] and "not finite" in logs[0]
    assert "update 3" in logs[1] and "manifest is missing" in logs[1]
    # Reading the policy alone falls back the same way.
    from mimic_mjx.training.checkpoint import load_policy

    assert load_policy(run_copy).update == 2


@pytest.mark.slow
def test_all_checkpoints_damaged_is_one_clear_error(run_copy, capsys):
    for step in _steps(run_copy):
        _flip_bytes(run_copy / "checkpoints" / str(step))
    assert main(["train", "--run-dir", str(run_copy), "--resume"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "no checkpoint in" in last and "verifies (damaged: updates 3, 2, 1)" in last
    assert "--resume" in last and "Traceback" not in err


@pytest.mark.slow
def test_rotation_never_deletes_the_last_verified_checkpoint(run_copy, monkeypatch):
    cfg = _cfg()
    state = _state(run_copy, cfg)
    ck = Checkpoints(run_copy / "checkpoints", max_to_keep=2, log=lambda m: None)
    # Steps whose manifest never got written (crashes mid-save) must not push the good ones out.
    monkeypatch.setattr(checkpoint_mod, "write_manifest", lambda d: None)
    for step in (4, 5, 6):
        ck.save(step, state, {})
    assert _steps(run_copy) == [2, 3, 4, 5, 6]  # the newest two verified (2, 3) stay
    monkeypatch.undo()
    ck.save(7, state, {})
    assert _steps(run_copy) == [3, 4, 5, 6, 7]  # the newest two verified (3, 7) and all between
    ck.save(8, state, {})
    assert _steps(run_copy) == [7, 8]
    ck.close()


@pytest.mark.slow
def test_full_disk_while_checkpointing_is_one_clear_error(tmp_path, clip_file, monkeypatch):
    import orbax.checkpoint as ocp

    save = ocp.CheckpointManager.save

    def failing_save(self, step, *a, **k):
        if step == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, step, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
    run = tmp_path / "run"
    with pytest.raises(RunDirError) as info:
        train(_cfg(), run, read_clips(clip_file), log=lambda m: None)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not write checkpoint at update 2 to {run / 'checkpoints'}: No space left on device")
    assert msg.endswith("free space or pass another --run-dir; the last good checkpoint is update 1")
    monkeypatch.undo()
    assert _steps(run) == [1]
    assert int(_state(run, _cfg(), step=1).updates) == 1

    # The manifest write failing the same way: the half-sealed step is dropped, the earlier ones stay.
    ck = Checkpoints(run / "checkpoints", log=lambda m: None)
    state = _state(run, _cfg(), step=1)

    def no_space(step_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_mod, "write_manifest", no_space)
    with pytest.raises(RunDirError, match="at update 5 .* the last good checkpoint is update 1$"):
        ck.save(5, state, {})

    def output_error(step_dir):  # what the atomic writer raises for a full disk
        raise OutputError(f"could not write {step_dir}/x: No space left on device; nothing was written")

    monkeypatch.setattr(checkpoint_mod, "write_manifest", output_error)
    with pytest.raises(RunDirError, match="at update 6 to .*: No space left on device; free space or pass"):
        ck.save(6, state, {})
    ck.close()
    assert _steps(run) == [1]


def test_run_dir_that_is_a_file_is_refused(tmp_path, clip_file):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(RunDirError, match="is a file, not a folder; pass another --run-dir"):
        train(_cfg(), path, read_clips(clip_file), log=lambda m: None)
    assert path.read_text() == "not a folder"


@pytest.mark.slow
def test_run_that_never_reached_a_checkpoint_starts_again(tmp_path, clip_file, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = _cfg(total_steps=PER_UPDATE)
    (run / "config.json").write_text(cfg.to_json())  # a crash right after the folder was created
    (run / "metrics.jsonl").write_text('{"update": 7}\n')
    assert main(["train", "--run-dir", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"start it again with `mimic train --run-dir {run} --clips" in err
    logs = []
    summary = train(cfg, run, read_clips(clip_file), log=logs.append)
    assert summary["updates"] == 1 and _steps(run) == [1]
    assert any("stopped before its first checkpoint; starting it again from update 0" in m for m in logs)
    assert [json.loads(line)["update"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.mark.slow
def test_resume_with_a_conflicting_config_or_clips_is_refused(run_copy, tmp_path, clip_file, capsys):
    argv = ["train", "--run-dir", str(run_copy), "--resume"]
    assert main(argv + ["--set", "ppo.learning_rate=0.01", "agent.latent_dim=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "differs in: agent.latent_dim, ppo.learning_rate" in err
    assert "agent.latent_dim 4 -> 8" in err and "ppo.learning_rate 0.0003 -> 0.01" in err
    other = tmp_path / "other.yaml"
    d = tiny_config_dict()
    d["ppo"]["num_envs"] = 16
    other.write_text(json.dumps(d))
    assert main(argv + ["--config", str(other)]) == 2
    assert "ppo.num_envs 8 -> 16" in capsys.readouterr().err
    assert main(argv + ["--clips", str(clip_file)]) == 2
    err = capsys.readouterr().err
    assert "--clips cannot be combined with --resume" in err and "another --run-dir" in err
    # Budget and logging keys may change; nothing is left to train here, so this only restores.
    assert main(argv + ["--set", "train.log_every_updates=2", "train.checkpoint_every_updates=5"]) == 0
    err = capsys.readouterr().err
    assert "resuming with changed settings: train.checkpoint_every_updates 1 -> 5" in err
    assert json.loads((run_copy / "config.json").read_text())["train"]["log_every_updates"] == 2
