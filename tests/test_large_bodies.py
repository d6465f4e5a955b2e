"""The trainable rat and the fruit fly: structure, names, contacts, short C MuJoCo simulations."""

from __future__ import annotations

import time

import mujoco
import numpy as np
import pytest
from mujoco import rollout

from mimic_mjx.bodies import available_bodies, fruitfly, get_body, rat
from mimic_mjx.bodies.mjcf import FLOOR
from mimic_mjx.errors import BodyError

#: The rat's 16 paw collision geoms (dm_control's collision_primitive_paw class): the contacts
#: rat.yaml keeps for training, written out here so the file's patterns are checked against them.
PAW_GEOMS = tuple(
    f"{part}_{side}{k}_collision"
    for side in "LR"
    for part, ks in (("foot", [""]), ("toe", "012"), ("hand", [""]), ("finger", "012"))
    for k in ks
)

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def _rollout_stats(model, n=64, seconds=1.0, noise=0.02, hold=5, seed=0, nthread=2, vmax=1e3):
    """Stability and speed of random-control rollouts in C MuJoCo (the solver table in rat.py).

    ``n`` rollouts of ``seconds`` from qpos0 with N(0, ``noise``) added to every
    hinge, controls uniform over each actuator's range, held for ``hold``
    physics steps. A rollout is bad if it produced NaN/Inf, was reset by
    MuJoCo's bad-acceleration guard (time jumps back) or exploded
    (max |qvel| > ``vmax``). ``vel`` is the median over good rollouts of their
    largest |qvel|.
    """
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    x0 = np.empty((n, mujoco.mj_stateSize(model, FULL)))
    hinge = np.array(
        [model.jnt_qposadr[j] for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    )
    for i in range(n):
        mujoco.mj_resetData(model, data)
        data.qpos[hinge] += rng.normal(0.0, noise, hinge.size)
        mujoco.mj_getState(model, data, x0[i], FULL)
    nstep = int(round(seconds / model.opt.timestep))
    lo, hi = model.actuator_ctrlrange.T
    ctrl = np.repeat(rng.uniform(lo, hi, (n, -(-nstep // hold), model.nu)), hold, axis=1)[:, :nstep]
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    t = time.perf_counter()
    state, _ = rollout.rollout(model, datas, x0, ctrl)
    wall = time.perf_counter() - t
    qvel = state[..., 1 + model.nq : 1 + model.nq + model.nv]
    finite = np.all(np.isfinite(state), axis=(1, 2))
    reset = np.any(np.diff(state[..., 0], axis=1) <= 0, axis=1)
    vel = np.nanmax(np.abs(qvel), axis=(1, 2))
    exploded = finite & ~reset & ~(vel <= vmax)
    bad = ~finite | reset | exploded
    return dict(
        bad=int(bad.sum()),
        nan=int((~finite).sum()),
        reset=int((finite & reset).sum()),
        exploded=int(exploded.sum()),
        steps_per_s=n * nstep / wall,
        vel=float(np.median(vel[~bad])) if (~bad).any() else float("nan"),
    )


def _names(m, kind, count):
    return [getattr(m, kind)(i).name for i in range(count)]


def _collidable_pairs(m):
    """Geom name pairs that contype/conaffinity allow to collide (bodies not excluded)."""
    ct, ca = m.geom_contype, m.geom_conaffinity
    pairs = set()
    for i in range(m.ngeom):
        for j in range(i + 1, m.ngeom):
            if m.geom_bodyid[i] != m.geom_bodyid[j] and ((ct[i] & ca[j]) or (ct[j] & ca[i])):
                pairs.add(frozenset((m.geom(i).name, m.geom(j).name)))
    return pairs


# ----------------------------------------------------------------- trainable rat


@pytest.fixture(scope="module")
def rat_models():
    return {
        "registration": get_body("rat").compile(),
        "position": get_body("rat").compile_trainable(),
        "torque": rat.build_trainable_spec(actuation="torque").compile(),
    }


def test_trainable_rat_has_the_registration_rats_names(rat_models):
    ref = rat_models["registration"]
    for key in ("position", "torque"):
        m = rat_models[key]
        assert (m.nq, m.nv, m.nu, m.na) == (74, 73, 38, 38)
        for kind, count in (("joint", "njnt"), ("body", "nbody"), ("actuator", "nu"), ("site", "nsite")):
            assert _names(m, kind, getattr(m, count)) == _names(ref, kind, getattr(ref, count)), (key, kind)
        np.testing.assert_array_equal(m.jnt_range, ref.jnt_range)
        np.testing.assert_allclose(m.body_mass, ref.body_mass)
        np.testing.assert_allclose(m.qpos0, ref.qpos0)  # same scale, same default pose
    assert "rat" in available_bodies() and "rat_trainable" not in available_bodies()
    assert get_body("rat").compile_trainable() is rat_models["position"]  # cached
    assert get_body("mouse_forelimb").compile_trainable() is get_body("mouse_forelimb").compile()


def test_trainable_rat_solver_timestep_and_actuators(rat_models):
    ref, pos, tor = rat_models["registration"], rat_models["position"], rat_models["torque"]
    assert ref.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON  # registration rat untouched
    for m, act in ((pos, "position"), (tor, "torque")):
        assert m.opt.solver == mujoco.mjtSolver.mjSOL_CG
        assert (m.opt.iterations, m.opt.ls_iterations) == {"position": (6, 6), "torque": (8, 6)}[act]
        assert m.opt.timestep == 0.002
    assert rat.TORQUE_ITERATIONS == (8, 6)
    # Position: dm_control's servos as authored.
    np.testing.assert_array_equal(pos.actuator_gainprm, ref.actuator_gainprm)
    np.testing.assert_array_equal(pos.actuator_biasprm, ref.actuator_biasprm)
    # Torque: gain = authored force range (lumbar capped), no bias, same filter.
    assert np.all(tor.actuator_biastype == mujoco.mjtBias.mjBIAS_NONE)
    assert np.all(tor.actuator_biasprm == 0)
    for a in range(tor.nu):
        name = tor.actuator(a).name
        expected = rat.TORQUE_PEAK_OVERRIDES.get(name, ref.actuator_forcerange[a, 1])
        assert tor.actuator_gainprm[a, 0] == expected, name
    assert tor.actuator("lumbar_extend").gainprm[0] == 1.0 and tor.actuator("cervical_bend").gainprm[0] == 20.0
    np.testing.assert_array_equal(tor.actuator_dynprm, ref.actuator_dynprm)
    custom = rat.build_trainable_spec(solver="newton", iterations=3, ls_iterations=5, timestep=0.001).compile()
    assert (custom.opt.solver, custom.opt.iterations, custom.opt.ls_iterations, custom.opt.timestep) == (
        mujoco.mjtSolver.mjSOL_NEWTON,
        3,
        5,
        0.001,
    )
    for bad in (dict(actuation="muscle"), dict(solver="pgs"), dict(iterations=0), dict(timestep=-1.0)):
        with pytest.raises(BodyError):
            rat.build_trainable_spec(**bad)


def test_trainable_rat_collides_only_paws_with_floor(rat_models):
    for key in ("position", "torque"):
        m = rat_models[key]
        pairs = _collidable_pairs(m)
        assert pairs == {frozenset((FLOOR, g)) for g in PAW_GEOMS}, key
        # Every paw geom is a type MJX collides with a plane.
        supported = {
            mujoco.mjtGeom.mjGEOM_CAPSULE,
            mujoco.mjtGeom.mjGEOM_ELLIPSOID,
            mujoco.mjtGeom.mjGEOM_SPHERE,
            mujoco.mjtGeom.mjGEOM_BOX,
        }
        assert {mujoco.mjtGeom(m.geom(g).type[0]) for g in PAW_GEOMS} <= supported
    m = rat_models["position"]
    data = mujoco.MjData(m)
    paws = {m.geom(g).id for g in PAW_GEOMS}
    seen = set()
    for _ in range(150):  # 0.3 s standing: the rat lands on its paws
        mujoco.mj_step(m, data)
        for c in range(data.ncon):
            g1, g2 = data.contact.geom[c]
            assert m.geom(FLOOR).id in (g1, g2) and (paws & {g1, g2})
            seen |= paws & {g1, g2}
    assert len(seen) >= 4 and data.qpos[2] > 0.03  # standing on several paws, torso up


@pytest.mark.parametrize("actuation", ["position", "torque"])
def test_trainable_rat_random_control_stays_finite(rat_models, actuation):
    stats = _rollout_stats(rat_models[actuation], n=6, seconds=0.5, seed=3)
    assert stats["bad"] == 0, stats


# ----------------------------------------------------------------- fruit fly


@pytest.fixture(scope="module")
def fly():
    return get_body("fruitfly").compile()


FIXED_PATTERNS = ("wing", "rostrum", "haustellum", "labrum", "antenna", "haltere")


def test_fruitfly_structure(fly):
    m = fly
    assert "fruitfly" in available_bodies()
    assert m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE and m.joint(0).name == fruitfly.ROOT_JOINT
    assert m.body(m.jnt_bodyid[0]).name == fruitfly.ROOT_BODY
    assert np.sum(m.jnt_type == mujoco.mjtJoint.mjJNT_FREE) == 1
    assert (m.nq, m.nv, m.nu, m.na) == (90, 89, 53, 53)
    joints = _names(m, "joint", m.njnt)
    assert not [j for j in joints if any(p in j for p in FIXED_PATTERNS)]
    for b in range(m.nbody):  # fixed bodies still exist but carry no joint
        if any(p in m.body(b).name for p in FIXED_PATTERNS):
            assert m.body_jntnum[b] == 0, m.body(b).name
    acts = _names(m, "actuator", m.nu)
    legs = [a for a in acts if any(f"T{i}_" in a for i in (1, 2, 3))]
    assert len(legs) == 48
    assert sorted(set(acts) - set(legs)) == ["abdomen", "abdomen_abduct", "head", "head_abduct", "head_twist"]
    assert not np.any(m.actuator_trntype == mujoco.mjtTrn.mjTRN_BODY)  # no adhesion (not in MJX)
    assert np.all(m.actuator_dyntype == mujoco.mjtDyn.mjDYN_FILTER)
    np.testing.assert_allclose(m.actuator_dynprm[:, 0], fruitfly.JOINT_FILTER)
    assert set(get_body("fruitfly").end_effectors) == {*fruitfly.CLAW_BODIES, "head"}
    assert 0.8e-3 < m.body_subtreemass[1] < 1.0e-3  # grams: about 0.9 mg
    assert m.opt.timestep == 1e-4 and m.opt.noslip_iterations == 0 and m.opt.density == 0
    assert _collidable_pairs(m) == {frozenset((FLOOR, g)) for g in fruitfly.CLAW_GEOMS}


def test_fruitfly_fixed_parts_keep_their_spring_pose(fly):
    raw = fruitfly.load_raw_spec().compile()
    d_raw = mujoco.MjData(raw)
    for j in range(raw.njnt):  # hinges of fixed parts at their spring reference
        if any(p in raw.joint(j).name for p in FIXED_PATTERNS):
            d_raw.qpos[raw.jnt_qposadr[j]] = raw.qpos_spring[raw.jnt_qposadr[j]]
    mujoco.mj_kinematics(raw, d_raw)
    d = mujoco.MjData(fly)
    mujoco.mj_kinematics(fly, d)
    for body in ("wing_left", "wing_right", "haustellum", "labrum_left", "antenna_right", "haltere_left"):
        np.testing.assert_allclose(d.xquat[fly.body(body).id], d_raw.xquat[raw.body(body).id], atol=1e-9, err_msg=body)
        # Same place relative to the thorax (the root moved up to the spawn height).
        np.testing.assert_allclose(
            d.xpos[fly.body(body).id] - d.xpos[1],
            d_raw.xpos[raw.body(body).id] - d_raw.xpos[1],
            atol=1e-9,
            err_msg=body,
        )


def test_fruitfly_optional_fixing_and_errors():
    m = fruitfly.build_spec(
        fixed=(*fruitfly.DEFAULT_FIXED, "head", "abdomen"),
        joint_filter=0,
        solver="cg",
        iterations=6,
        ls_iterations=6,
        timestep=2e-4,
    ).compile()
    assert not [j for j in _names(m, "joint", m.njnt) if "head" in j or "abdomen" in j]
    assert m.nu == 48 and m.na == 0 and m.nv == 6 + 66
    assert (m.opt.solver, m.opt.iterations, m.opt.timestep) == (mujoco.mjtSolver.mjSOL_CG, 6, 2e-4)
    with pytest.raises(BodyError, match="unknown fruit fly parts"):
        fruitfly.build_spec(fixed=("legs",))
    with pytest.raises(BodyError):
        fruitfly.build_spec(solver="pgs")


def test_fruitfly_settles_on_its_claws(fly):
    data = mujoco.MjData(fly)
    for _ in range(2000):  # 0.2 s at 0.1 ms
        mujoco.mj_step(fly, data)
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    assert data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number == 0
    claws = {fly.geom(g).id for g in fruitfly.CLAW_GEOMS}
    touching = {g for c in range(data.ncon) for g in data.contact.geom[c] if g in claws}
    assert len(touching) >= 5  # standing on (nearly) all six legs
    assert 0.1 < data.qpos[2] < 0.14  # thorax height, cm
    assert np.abs(data.qvel).max() < 1.0  # at rest


def test_fruitfly_random_control_stays_finite(fly):
    stats = _rollout_stats(fly, n=4, seconds=0.05, hold=20, seed=1, vmax=1e4)
    assert stats["bad"] == 0, stats
