"""The C. elegans bodies (``worm`` on agar, ``worm_liquid`` in water) and their undulation clips.

Anatomy (counts, mass, length, width, ranges), muscles (which joints each
spans, which way it bends), the anisotropic agar friction on C MuJoCo and MJX,
the liquid scene's lack of thrust, the shipped XML against the generator,
the clips' kinematics (wavelength, frequency, keypoints on the centreline,
refused parameters), and a few PPO updates followed by an evaluation.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from mimic_mjx.bodies import get_body, worm
from mimic_mjx.bodies import worm_anatomy as A
from mimic_mjx.data import undulation
from mimic_mjx.errors import ClipError


@pytest.fixture(scope="module")
def agar():
    return get_body("worm").compile_trainable()


@pytest.fixture(scope="module")
def liquid():
    return get_body("worm_liquid").compile_trainable()


def test_shipped_xml_is_what_the_module_writes():
    assert worm.XML.read_text() == worm.worm_xml(), "run: python -m mimic_mjx.bodies.worm --write"


def test_95_muscles_in_four_quadrants(agar):
    names = [agar.actuator(a).name for a in range(agar.nu)]
    counts = {q: sum(n.startswith(q) for n in names) for q in A.QUADRANTS}
    assert counts == {"MDL": 24, "MDR": 24, "MVL": 23, "MVR": 24} and agar.nu == 95
    assert "MVL24" not in names and "MVL23" in names
    assert all(agar.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_MUSCLE for a in range(agar.nu))
    assert np.all(agar.actuator_ctrlrange == [0.0, 1.0])


def test_mass_length_width_and_joints(agar):
    # Water (1e9 mg/m^3) x the profile's volume, pi r(s)^2 integrated over 1 mm: 3.64e-3 mg (3.6 ug).
    s = (np.arange(10000) + 0.5) / 10000 * A.LENGTH_M
    expected = A.WATER_DENSITY_MG_M3 * np.sum(np.pi * A.radius(s) ** 2) * A.LENGTH_M / 10000
    assert abs(expected - 3.64e-3) < 0.01e-3
    assert agar.body_subtreemass[0] == pytest.approx(expected, rel=1e-3)
    data = mujoco.MjData(agar)
    mujoco.mj_kinematics(agar, data)
    caps = [agar.geom(f"seg{k:02d}_capsule").id for k in (1, 24)]
    head_tip = data.geom_xpos[caps[0]][0] + agar.geom_size[caps[0]][1] + agar.geom_size[caps[0]][0]
    tail_tip = data.geom_xpos[caps[1]][0] - agar.geom_size[caps[1]][1] - agar.geom_size[caps[1]][0]
    assert head_tip - tail_tip == pytest.approx(1.0e-3, rel=1e-6)
    widths = [2 * agar.geom_size[agar.geom(f"seg{k:02d}_capsule").id][0] for k in (12, 13)]
    assert np.allclose(widths, 80e-6, rtol=0.01)
    # Every segment rests on the agar (its capsule's bottom at z = 0).
    bottoms = [data.geom_xpos[agar.geom(f"seg{k:02d}_capsule").id][2] - A.segment_radius(k) for k in range(1, 25)]
    assert np.allclose(bottoms, 0.0, atol=1e-10)  # 0.1 nm: the XML keeps 6 digits
    assert agar.nq == 53 and agar.nv == 52 and agar.joint(0).name == "root"
    for j in range(1, 24):
        assert np.allclose(agar.jnt_range[agar.joint(f"dv{j:02d}").id], [-1.0, 1.0])
        assert np.allclose(agar.jnt_range[agar.joint(f"lat{j:02d}").id], [-0.3, 0.3])
        assert agar.jnt_stiffness[agar.joint(f"dv{j:02d}").id] == pytest.approx(A.bending_stiffness(j), rel=1e-5)


def test_each_muscle_spans_its_hinges_and_bends_towards_its_side(agar):
    data = mujoco.MjData(agar)
    mujoco.mj_forward(agar, data)
    moment = np.zeros((agar.nu, agar.nv))
    mujoco.mju_sparse2dense(moment, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind)
    for a in range(agar.nu):
        name = agar.actuator(a).name
        q, k = name[:3], int(name[3:])
        dorsal, left = A.QUADRANT_SIDES[q]
        hinges = [j for j in (k - 1, k) if 1 <= j <= 23]
        want = {agar.jnt_dofadr[agar.joint(f"{kind}{j:02d}").id] for j in hinges for kind in ("dv", "lat")}
        assert set(np.flatnonzero(moment[a])) == want, name
        # A muscle pulls (negative force): its generalized force is -moment; positive dv = dorsal, lat = left.
        for j in hinges:
            assert np.sign(-moment[a, agar.jnt_dofadr[agar.joint(f"dv{j:02d}").id]]) == dorsal, name
            assert np.sign(-moment[a, agar.jnt_dofadr[agar.joint(f"lat{j:02d}").id]]) == left, name


def test_one_quadrant_bends_the_body_past_the_largest_generated_curvature(liquid):
    data = mujoco.MjData(liquid)
    names = [liquid.actuator(a).name for a in range(liquid.nu)]
    dv = [liquid.joint(f"dv{j:02d}").qposadr[0] for j in range(1, 24)]
    lat = [liquid.joint(f"lat{j:02d}").qposadr[0] for j in range(1, 24)]
    for quadrant, (dorsal, left) in A.QUADRANT_SIDES.items():
        mujoco.mj_resetData(liquid, data)
        data.ctrl[:] = [1.0 if n.startswith(quadrant) else 0.0 for n in names]
        for _ in range(900):  # 1 s
            mujoco.mj_step(liquid, data)
        largest = max(undulation.PHYSIOLOGICAL[m]["amplitude"][1] for m in undulation.MODES) / A.SEGMENTS
        # The last hinge of MVL has one muscle (MVL23; MVL24 does not exist): half the torque there.
        bent = dorsal * data.qpos[dv][: 22 if quadrant == "MVL" else 23]
        assert np.all(bent > 1.3 * largest), quadrant
        assert np.all(left * data.qpos[lat] > 0), quadrant


def _pushed(friction, yaw: float, across: bool, backend: str, cone: str = "elliptic") -> float:
    """How far a capsule (yawed by ``yaw``) slides in 0.3 s under half its weight along or across its axis."""
    xml = f"""<mujoco><compiler angle="radian"/><option timestep="0.001" cone="{cone}"/>
      <worldbody><geom name="floor" type="plane" size="1 1 0.1" contype="0" conaffinity="0"/>
        <body name="b" pos="0 0 0.02" euler="0 0 {yaw}">
          <joint type="slide" axis="1 0 0"/><joint type="slide" axis="0 1 0"/><joint type="slide" axis="0 0 1"/>
          <geom name="cap" type="capsule" size="0.02" fromto="0.05 0 0 -0.05 0 0" mass="1" contype="0" conaffinity="0"/>
        </body></worldbody>
      <contact><pair geom1="cap" geom2="floor" condim="3" friction="{" ".join(map(str, friction))}"/></contact>
    </mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    angle = yaw + (math.pi / 2 if across else 0.0)
    force = 0.5 * 9.81 * np.array([math.cos(angle), math.sin(angle), 0.0])
    if backend == "native":
        data.xfrc_applied[1, :3] = force
        for _ in range(300):
            mujoco.mj_step(model, data)
        return float(np.linalg.norm(data.qpos[:2]))
    import jax
    import jax.numpy as jnp
    from mujoco import mjx

    mx = mjx.put_model(model)
    dx = mjx.make_data(mx).replace(xfrc_applied=jnp.zeros((model.nbody, 6)).at[1, :3].set(force))
    dx = jax.jit(lambda d: jax.lax.fori_loop(0, 300, lambda i, d: mjx.step(mx, d), d))(dx)
    return float(np.linalg.norm(np.asarray(dx.qpos[:2])))


@pytest.mark.parametrize("backend", ["native", "mjx"])
def test_anisotropic_friction_first_tangent_is_the_capsule_axis(agar, backend):
    """The worm's pair friction is [along, across]: a capsule on a plane gets its first contact tangent along
    its axis, whatever its heading, on C MuJoCo and on MJX: pushed with half its weight it slides along
    (friction 0.1) and holds across (1.0)."""
    friction = agar.pair_friction[0]
    assert friction[0] == A.FRICTION_ALONG and friction[1] == A.FRICTION_ACROSS
    assert agar.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    for cone, yaw in (("elliptic", 0.0), ("elliptic", 0.7), ("elliptic", 2.0), ("pyramidal", 0.7)):
        along = _pushed(friction, yaw, across=False, backend=backend, cone=cone)
        across = _pushed(friction, yaw, across=True, backend=backend, cone=cone)
        assert along > 0.1 and across < 1e-3 * along, (cone, yaw, along, across)


def test_agar_contacts_are_the_segment_floor_pairs_only(agar):
    assert agar.npair == 24
    geoms = zip(agar.pair_geom1, agar.pair_geom2, strict=True)
    pairs = {frozenset((agar.geom(int(a)).name, agar.geom(int(b)).name)) for a, b in geoms}
    assert pairs == {frozenset((f"seg{k:02d}_capsule", "floor")) for k in range(1, 25)}
    assert all(agar.geom_contype[g] == 0 and agar.geom_conaffinity[g] == 0 for g in range(1, agar.ngeom))
    data = mujoco.MjData(agar)
    mujoco.mj_forward(agar, data)
    assert data.ncon > 0 and all(data.contact.exclude == 0)


def test_liquid_undulation_produces_no_forward_thrust(liquid):
    """The inertia-box fluid model's drag is isotropic: a muscle-driven swimming wave does not move the worm
    along its body (a real worm swims ~0.1 wavelength per cycle, ~150 um)."""
    assert liquid.npair == 0 and liquid.opt.density == A.WATER_DENSITY_MG_M3
    assert liquid.opt.viscosity == A.WATER_VISCOSITY_MG_M_S and not np.any(liquid.opt.gravity)
    data = mujoco.MjData(liquid)
    names = [liquid.actuator(a).name for a in range(liquid.nu)]
    seg = np.array([int(n[3:]) for n in names])
    dorsal = np.array([n[1] == "D" for n in names])
    f, lam, dt = 1.76, 1.54, liquid.opt.timestep
    per = int(round(1 / f / dt))
    centres = []
    for cycle in range(4):
        total = np.zeros(3)
        for t in range(per):
            wave = np.sin(2 * np.pi * (f * (cycle * per + t) * dt - seg / 24 / lam))
            data.ctrl[:] = np.where(dorsal, np.clip(wave, 0, 1), np.clip(-wave, 0, 1))
            mujoco.mj_step(liquid, data)
            total += data.xipos[1:].mean(0)
        centres.append(total / per)
    dv = [liquid.joint(f"dv{j:02d}").qposadr[0] for j in range(1, 24)]
    assert np.abs(data.qpos[dv]).max() > 0.3  # it does undulate
    step = np.diff(np.array(centres[1:]), axis=0)  # per cycle, after the first
    assert np.all(np.abs(step[:, 0]) < 2e-6)  # along the body (x): under 2 um per cycle
    assert np.all(np.linalg.norm(step, axis=1) < 20e-6)


def test_agar_undulation_crawls_forward(agar):
    """The anisotropic friction turns a travelling wave of muscle activation into forward motion."""
    data = mujoco.MjData(agar)
    names = [agar.actuator(a).name for a in range(agar.nu)]
    seg = np.array([int(n[3:]) for n in names])
    dorsal = np.array([n[1] == "D" for n in names])
    f, lam, dt = 0.3, 0.65, agar.opt.timestep
    start = None
    for t in range(int(3.0 / dt)):
        wave = np.sin(2 * np.pi * (f * t * dt - seg / 24 / lam))
        data.ctrl[:] = 0.15 * np.where(dorsal, np.clip(wave, 0, 1), np.clip(-wave, 0, 1))
        mujoco.mj_step(agar, data)
        if t == int(1.0 / dt):
            start = data.subtree_com[1].copy()
    moved = data.subtree_com[1] - start  # head at +x: forward is +x
    assert moved[0] > 100e-6 and abs(moved[1]) < 0.3 * moved[0], moved


def _curvatures(clip):
    """(frames, 23) hinge curvature dv / l (1/m)."""
    cols = [clip.joint_names.index(f"dv{j:02d}") for j in range(1, 24)]
    adr = np.cumsum([0, *clip.joint_qpos_dims])[:-1]
    return clip.qpos[:, adr[cols]] / A.segment_length()


def _best(values, grid, x):
    """The grid value whose sinusoid sin/cos(2 pi g x) carries the most of ``values`` (least squares)."""
    power = []
    for g in grid:
        basis = np.stack([np.sin(2 * np.pi * g * x), np.cos(2 * np.pi * g * x)], 1)
        coef = np.linalg.lstsq(basis, values, rcond=None)[0]
        power.append(np.sum((basis @ coef) ** 2))
    return grid[int(np.argmax(power))]


@pytest.mark.parametrize(("mode", "f", "lam", "amp"), [("crawl", 0.3, 0.65, 8.0), ("swim", 1.76, 1.54, 5.0)])
def test_generated_wavelength_frequency_and_amplitude(mode, f, lam, amp):
    (clip,) = undulation.make_worm_clips(
        mode, 1, seed=3, frequency_hz=f, wavelength_bl=lam, amplitude=amp, duration_s=4 / f + 0.5
    )
    kappa = _curvatures(clip)
    s = np.arange(1, 24) * A.segment_length() / A.LENGTH_M  # hinge positions, body lengths
    lam_grid = np.linspace(0.5 * lam, 1.5 * lam, 401)
    measured = [1.0 / _best(k, 1.0 / lam_grid, s) for k in kappa[::7]]
    assert np.median(measured) == pytest.approx(lam, rel=0.03)
    t = np.arange(len(clip.qpos)) / clip.fps
    measured_f = _best(kappa[:, 11], np.linspace(0.5 * f, 1.5 * f, 1001), t)
    assert measured_f == pytest.approx(f, rel=0.03)
    assert np.abs(kappa).max() * A.LENGTH_M == pytest.approx(amp, rel=0.05)
    # The wave runs head -> tail: the curvature at the hinge behind lags the one in front.
    assert np.mean(kappa[:-1, 5] * kappa[1:, 6]) > np.mean(kappa[1:, 5] * kappa[:-1, 6])
    if mode == "crawl":  # it advances at about the wave speed, less slip, along its mean direction
        head = clip.keypoints[:, 0, :2]
        speed = np.linalg.norm(head[-1] - head[0]) / t[-1]
        assert 0.5 * lam * A.LENGTH_M * f < speed < lam * A.LENGTH_M * f


def test_keypoints_lie_on_the_centreline():
    body = get_body("worm")
    assert len(body.keypoint_map.names) == 49 and body.keypoint_map.names[0] == "cl00"
    t = np.arange(20) / 30.0
    ends = undulation.centreline("crawl", t, 0.5, 0.6, 10.0, heading=0.4)
    qpos = undulation.qpos_from_centreline(ends, body.compile())
    from mimic_mjx.data.generated import clip_from_qpos

    clip = clip_from_qpos(body, "c", qpos, 30.0)
    kp = clip.keypoints[..., :2]
    assert np.abs(kp[:, 0::2] - ends).max() < 0.2e-6  # head tip and segment ends: on the curve
    mid = (ends[:, 1:] + ends[:, :-1]) / 2
    assert np.abs(kp[:, 1::2] - mid).max() < 0.2e-6  # midpoints: on the chords, < 3 um from the curve
    assert np.all(np.abs(np.diff(kp, axis=1)).sum(-1) > 0)


def test_out_of_range_parameters_are_refused_with_the_range():
    with pytest.raises(ClipError, match=r"0\.1-1 Hz"):
        undulation.make_worm_clips("crawl", 1, frequency_hz=2.0)
    with pytest.raises(ClipError, match=r"1-2 body lengths"):
        undulation.make_worm_clips("swim", 1, wavelength_bl=0.5)
    with pytest.raises(ClipError, match="mode"):
        undulation.make_worm_clips("walk", 1)
    for mode, sets in undulation.HELDOUT.items():
        for params in sets:
            for key, value in params.items():
                lo, hi = undulation.PHYSIOLOGICAL[mode][key]
                tlo, thi = undulation.TRAINING[mode][key]
                assert lo <= value <= hi
                assert key == "amplitude" or not tlo <= value <= thi


def test_clips_at_the_physiological_corners_pass_the_bodies_speed_bounds():
    from mimic_mjx.data.check import clip_speed_warnings

    for mode, ranges in undulation.PHYSIOLOGICAL.items():
        for f in ranges["frequency_hz"]:
            for lam in ranges["wavelength_bl"]:
                clips = [
                    undulation.make_worm_clips(
                        mode, 1, frequency_hz=f, wavelength_bl=lam, amplitude=amp, duration_s=2.0
                    )[0]
                    for amp in ranges["amplitude"]
                ]
                assert clip_speed_warnings(clips, undulation.BODIES[mode]) == [], (mode, f, lam)


def test_a_few_ppo_updates_then_evaluate(tmp_path):
    from conftest import tiny_config_dict
    from mimic_mjx import config as config_lib
    from mimic_mjx.analysis.evaluate import evaluate
    from mimic_mjx.training.trainer import train

    clips = undulation.make_worm_clips("crawl", 2, seed=0, duration_s=1.0)
    values = tiny_config_dict()
    values["env"] = {"body": "worm", "backend": "native", "native_threads": 1, "substeps": 30}
    defaults = get_body("worm").default_config().to_dict()
    values["reward"], values["termination"] = defaults["reward"], defaults["termination"]
    cfg = config_lib.from_dict(values)
    train(cfg, tmp_path / "run", clips, log=lambda m: None)
    summary = evaluate(tmp_path / "run", clips, tmp_path / "eval")
    per_clip = summary["clips"]
    assert len(per_clip) == 2
    assert all(0.0 <= c["fraction_tracked"] <= 1.0 for c in per_clip)
