"""Many clips: lazy clip files, binding one clip at a time, no device copy of the bank on a CPU, clip weights."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.config import ConfigError, EnvConfig
from mimic_mjx.data import clip_files
from mimic_mjx.data.binding import bind_clips
from mimic_mjx.data.clip_files import ClipFiles, list_clips, open_clip_files
from mimic_mjx.data.clips import read_clip_files, read_clips, write_clips
from mimic_mjx.data.synthetic import make_reaching_clips
from mimic_mjx.environments.imitation import ImitationEnv
from mimic_mjx.environments.starts import empty_failures, failure_cdf
from mimic_mjx.errors import ClipError

BODY = get_body("mouse_forelimb")
LENGTHS = (40, 100, 250)


def _clips(lengths=LENGTHS, prefix="c"):
    return [
        dataclasses.replace(make_reaching_clips(1, seed=i, num_frames=n)[0], name=f"{prefix}{i}")
        for i, n in enumerate(lengths)
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    a, b = d / "a.h5", d / "b.h5"
    write_clips(a, _clips())
    write_clips(b, _clips((30, 60), prefix="c"))  # names c0, c1 again: renamed as read_clip_files does
    return a, b


def _bind(clips):
    return bind_clips(clips, BODY.compile(), BODY.name, BODY.end_effectors, 6, 5, keypoint_bodies=BODY.keypoint_bodies)


def test_listing_reads_no_arrays_and_matches_the_reader(files, monkeypatch):
    a, b = files
    infos = list_clips(a)
    assert [(i.name, i.num_frames, i.fps) for i in infos] == [(f"c{k}", n, 200.0) for k, n in enumerate(LENGTHS)]
    assert infos[0].body == BODY.name and infos[0].body_names  # what binding checks
    lazy, eager = open_clip_files([a, b]), read_clip_files([a, b])
    assert lazy.names == tuple(c.name for c in eager) and len(lazy) == 5
    for i in (0, 4):
        x, y = lazy[i], eager[i]
        assert x.name == y.name
        np.testing.assert_array_equal(x.qpos, y.qpos)
        np.testing.assert_array_equal(x.keypoints, y.keypoints)
    # A named subset reads only those clips, in the order asked.
    sub = read_clips(a, names=["c2", "c0"])
    assert [c.name for c in sub] == ["c2", "c0"]
    with pytest.raises(ClipError, match="no clip named 'nope'.*c0, c1, c2"):
        read_clips(a, names=["nope"])
    with pytest.raises(ClipError, match="no clip named 'nope'"):
        lazy.select(["nope"])
    assert isinstance(lazy[1:3], ClipFiles) and lazy[1:3].names == lazy.names[1:3]
    assert lazy.select(["b-c1"])[0].num_frames == 60
    # The reader's errors are the listing's.
    with pytest.raises(ClipError, match="is a folder"):
        list_clips(a.parent)


def test_binding_lazily_equals_binding_in_memory_and_reads_each_clip_once(files, monkeypatch):
    a, b = files
    eager = _bind(read_clip_files([a, b]))
    reads = []
    real = clip_files.read_clips
    monkeypatch.setattr(clip_files, "read_clips", lambda *x, **k: reads.append(k["names"]) or real(*x, **k))
    lazy = _bind(open_clip_files([a, b]))
    assert len(reads) == 5  # one read per clip, none held beyond its own binding
    assert lazy.names == eager.names
    for f in dataclasses.fields(lazy):
        x, y = getattr(lazy, f.name), getattr(eager, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


def test_env_on_a_cpu_holds_no_second_copy_of_the_bank(files):
    bank = _bind(open_clip_files(files[:1]))
    env = ImitationEnv(EnvConfig(backend="native"), bank, BODY.compile_trainable(), BODY.end_effectors)
    if jax.default_backend() != "cpu":
        pytest.skip("a device other than the CPU holds its own copy")
    for dev, host in [(env.ref_qpos, bank.qpos), (env.ref_kp, bank.keypoints), (env.ref_poses[0], bank.xpos)]:
        assert np.shares_memory(np.asarray(dev), host)


@pytest.fixture(scope="module")
def bank():
    return _bind(_clips())


def _clip_draws(bank, n=6000, cdf=None, **kw):
    env = ImitationEnv(EnvConfig(**kw), bank, BODY.compile_trainable(), BODY.end_effectors)
    keys = jax.random.split(jax.random.PRNGKey(7), n)
    reset = jax.vmap(env.reset, in_axes=(0, None)) if cdf is not None else jax.vmap(env.reset)
    states = jax.jit(reset)(keys, cdf) if cdf is not None else jax.jit(reset)(keys)
    clip, frame = np.asarray(states.clip), np.asarray(states.frame)
    return env, np.bincount(clip, minlength=bank.num_clips) / n, clip, frame


def test_uniform_weights_draw_every_clip_alike(bank):
    _, share, *_ = _clip_draws(bank)
    np.testing.assert_allclose(share, 1 / 3, atol=0.025)


def test_length_weights_draw_start_frames_uniformly_over_all_frames(bank):
    _, share, clip, frame = _clip_draws(bank, clip_weights="length")
    starts = np.asarray(LENGTHS) - 1  # control_every 1: every frame but the last can start
    np.testing.assert_allclose(share, starts / starts.sum(), atol=0.025)
    # Within a clip the frame is still uniform: frames of the longest clip cover its range evenly.
    f = frame[clip == 2]
    assert f.max() == LENGTHS[2] - 2 and abs(np.mean(f < LENGTHS[2] / 2) - 0.5) < 0.05


def test_failure_weights_draw_clips_by_their_recent_terminations(bank):
    n, t = bank.num_clips, bank.lengths.max() + bank.pad
    memory = empty_failures(n, t).at[2, 100].set(3.0).at[0, 10].set(1.0)
    kw = {"clip_weights": "failure", "failure_start_prob": 1e-9}  # the memory is kept; starts as usual
    _, share, *_ = _clip_draws(bank, cdf=failure_cdf(memory), **kw)
    np.testing.assert_allclose(share, [0.5 / 3 + 0.5 / 4, 0.5 / 3, 0.5 / 3 + 0.5 * 3 / 4], atol=0.025)
    # An empty memory (or none, as in evaluation): uniform.
    _, share, *_ = _clip_draws(bank, cdf=failure_cdf(empty_failures(n, t)), **kw)
    np.testing.assert_allclose(share, 1 / 3, atol=0.025)
    _, share, *_ = _clip_draws(bank, **kw)
    np.testing.assert_allclose(share, 1 / 3, atol=0.025)


def test_bad_clip_weights_are_named():
    with pytest.raises(ConfigError, match="env.clip_weights must be one of uniform, length, failure, got 'frames'"):
        EnvConfig(clip_weights="frames").validate()
    with pytest.raises(ConfigError, match="failure_start_prob > 0"):
        EnvConfig(clip_weights="failure").validate()


def test_a_thousand_clips_bind_in_the_memory_of_the_bank_alone(tmp_path):
    """Binding 1,000 clips from a file holds the bank and one clip, not every clip besides (tracemalloc)."""
    import tracemalloc

    base = make_reaching_clips(1, seed=0, num_frames=20)[0]
    path = tmp_path / "many.h5"
    write_clips(path, [dataclasses.replace(base, name=f"clip{i:04d}") for i in range(1000)])
    clips = open_clip_files([path])
    assert len(clips) == 1000 and clips.infos[-1].num_frames == 20
    tracemalloc.start()
    try:
        bank = _bind(clips)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(a.nbytes for a in vars(bank).values() if isinstance(a, np.ndarray))
    assert bank.num_clips == 1000 and held < path.stat().st_size  # the bank is about the clips' size on disk
    # The clips read (about the bank's size again: 1.8x it when all are read first) never pile up beside it.
    assert peak < 1.15 * held, (peak, held)


def test_a_whole_clip_file_is_stored_by_copy_and_anything_else_is_written(files, tmp_path, monkeypatch):
    """A run stores its clips (train_clips.h5) as a byte copy when they are one whole file: no in-memory build."""
    import filecmp

    a, b = files
    built = []
    monkeypatch.setattr(clip_files, "write_clips", lambda path, clips: built.append(path) or write_clips(path, clips))
    clip_files.store_clips(tmp_path / "whole.h5", open_clip_files([a]))
    assert not built and filecmp.cmp(a, tmp_path / "whole.h5", shallow=False)
    # A subset, two files (renamed clips) or clips in memory are written as clip files of their own.
    some = open_clip_files([a]).select(["c0", "c2"])
    clip_files.store_clips(tmp_path / "some.h5", some)
    clip_files.store_clips(tmp_path / "two.h5", open_clip_files([a, b]))
    clip_files.store_clips(tmp_path / "mem.h5", _clips())
    assert len(built) == 3
    assert [c.name for c in read_clips(tmp_path / "some.h5")] == ["c0", "c2"]
    assert len(read_clips(tmp_path / "two.h5")) == 5
    np.testing.assert_array_equal(read_clips(tmp_path / "whole.h5")[1].qpos, read_clips(a)[1].qpos)


def test_clips_list_and_only_pick_clips_without_reading_the_rest(files, tmp_path, capsys, monkeypatch):
    import json

    from mimic_mjx.cli.main import main

    a, b = files
    assert main(["clips", "list", str(a), str(b), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in listed["clips"]] == ["c0", "c1", "c2", "b-c0", "b-c1"]
    assert listed["frames"] == sum(LENGTHS) + 90
    assert main(["clips", "list", str(a)]) == 0
    assert "3 clip(s), 390 frames" in capsys.readouterr().out
    # --only narrows the files to the named clips before anything is loaded; a wrong name is one line.
    from mimic_mjx.cli.types import open_selected_clips

    args = type("Args", (), {"clips": [str(a), str(b)], "only": ["b-c1", "c0"]})()
    assert open_selected_clips(args).names == ("b-c1", "c0")
    code = main(
        ["rollout", str(tmp_path / "no_run"), "--clips", str(a), "--only", "c9", "--out", str(tmp_path / "r.h5")]
    )
    err = capsys.readouterr().err
    assert code != 0 and "no clip named 'c9'; the clips are: c0, c1, c2" in err and "Traceback" not in err


def test_clips_of_very_different_lengths_each_pay_their_own_padding_only():
    """30, 40 and 2,000 frames: the bank holds sum(length + pad) frames, and the task reads each clip's own."""
    from conftest import tiny_config_dict
    from mimic_mjx import config as config_lib
    from mimic_mjx.training.experiment import build_env

    cfg = config_lib.from_dict({**tiny_config_dict(), "env": {"backend": "native", "control_every": 2}})
    ce, H = cfg.env.control_every, cfg.env.horizon
    pad = H * ce
    clips = _clips((30, 40, 2000), prefix="len")
    # The first clip lists its joints in another order than the body: binding reorders them.
    c0, order = clips[0], [3, 1, 0, 2]  # the forelimb's joints are hinges: one column each
    names = tuple(c0.joint_names[j] for j in order)
    clips[0] = dataclasses.replace(c0, joint_names=names, qpos=c0.qpos[:, order], qvel=c0.qvel[:, order])
    env = build_env(cfg, clips)
    bank, lengths = env.bank, np.array([30, 40, 2000])
    F = int(np.sum(lengths + pad))
    assert bank.pad == pad and bank.starts.tolist() == [0, 30 + pad, 30 + pad + 40 + pad]
    for name in ("qpos", "qvel", "ee_pos", "body_pos", "xpos", "xquat", "keypoints", "keypoint_valid"):
        assert getattr(bank, name).shape[0] == F, name  # not 3 x (2000 + pad)
    assert bank.marker_offsets.shape == (3, 3, 3)
    assert env.ref_qpos.shape[0] == env.ref_poses[0].shape[0] == F  # the device arrays too
    # The straightforward expectation: each clip in the body's joint order, its last frame repeated at rest.
    model_order = [c.qpos for c in _clips((30, 40, 2000), prefix="len")]
    for i, (c, L) in enumerate(zip(clips, lengths, strict=True)):
        want_q = np.concatenate([model_order[i], np.repeat(model_order[i][-1:], pad, axis=0)]).astype(np.float32)
        s = bank.starts[i]
        np.testing.assert_array_equal(bank.qpos[s : s + L + pad], want_q)
        np.testing.assert_array_equal(bank.clip_frames(i, "qpos"), want_q[:L])
        np.testing.assert_array_equal(bank.qvel[s + L : s + L + pad], 0.0)
        np.testing.assert_array_equal(bank.clip_frames(i, "keypoints"), c.keypoints.astype(np.float32))
        np.testing.assert_array_equal(bank.keypoint_valid[s + L : s + L + pad], 0.0)  # padding is not recorded
    with pytest.raises(IndexError, match="not all in clip 0"):
        bank.clip_frames(0, "qpos", [30 + pad])

    def expected_obs(clip, frame, qpos):
        """Joint part of the look-ahead: the clip's own frames ahead (its padding past its end) minus ``qpos``."""
        q = model_order[clip]
        ahead = np.minimum(frame + ce * np.arange(1, H + 1), len(q) - 1)
        return q[ahead] - qpos[None]

    reset_to, step = jax.jit(env.reset_to), jax.jit(env.step_no_reset)
    nj = env.model.nq  # the forelimb has no free root: the look-ahead is (H, joints + tracked bodies x 3)
    for clip, frame in [(0, 0), (0, 27), (1, 37), (2, 0), (2, 1500), (2, 1997)]:
        s = reset_to(jax.random.PRNGKey(clip), clip, frame)
        np.testing.assert_allclose(np.asarray(s.data.qpos), model_order[clip][frame], atol=1e-7)
        obs = np.asarray(s.ref_obs).reshape(H, -1)[:, :nj]
        np.testing.assert_allclose(obs, expected_obs(clip, frame, model_order[clip][frame]), atol=1e-6)
        # Steps stay in the clip: its frames ahead of the body, then the end of the clip.
        for k in range(1, 4):
            s = step(s, np.zeros(env.action_size, np.float32))
            assert int(s.frame) == frame + k * ce
            obs = np.asarray(s.ref_obs).reshape(H, -1)[:, :nj]
            np.testing.assert_allclose(obs, expected_obs(clip, frame + k * ce, np.asarray(s.data.qpos)), atol=1e-5)
            if frame + k * ce + ce >= lengths[clip]:
                assert float(s.truncated) == 1.0
                break
