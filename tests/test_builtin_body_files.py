"""The built-in rat and fly are body files (issue 21 item 6) and compile to the models built in code before.

tests/builtin_bodies_reference.json was written by the code that built both bodies in Python,
before they became bodies/files/rat.yaml and fruitfly.yaml: the benchmarks and trained runs of
that time stay valid only while both variants of both bodies compile to the same models.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

from mimic_mjx import config as config_lib
from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.bodyfile import load_body_file
from mimic_mjx.bodies.bodyschema import parse_body_file
from mimic_mjx.bodies.mjcf import resolve_mjcf
from mimic_mjx.bodies.model import CONFIGS, model_sha256
from mimic_mjx.errors import BodyError

REFERENCE = json.loads((Path(__file__).parent / "builtin_bodies_reference.json").read_text())
FILES = Path(__file__).resolve().parents[1] / "src" / "mimic_mjx" / "bodies" / "files"


def _names(m, kind, n):
    return [getattr(m, kind)(i).name for i in range(n)]


def fingerprint(m: mujoco.MjModel) -> dict:
    """What the reference holds of a compiled model (floats rounded as stored)."""

    def r(a):
        return np.round(np.asarray(a, float), 10).tolist()

    return {
        **{k: int(getattr(m, k)) for k in ("nq", "nv", "nu", "na", "nbody", "njnt", "ntendon", "nsite")},
        "body_names": _names(m, "body", m.nbody),
        "joint_names": _names(m, "joint", m.njnt),
        "actuator_names": _names(m, "actuator", m.nu),
        "actuator_gainprm": r(m.actuator_gainprm[:, :3]),
        "actuator_biasprm": r(m.actuator_biasprm[:, :3]),
        "actuator_ctrlrange": r(m.actuator_ctrlrange),
        "actuator_dynprm": r(m.actuator_dynprm[:, :1]),
        "geom_contype": m.geom_contype.tolist(),
        "geom_conaffinity": m.geom_conaffinity.tolist(),
        "geom_condim": m.geom_condim.tolist(),
        "body_mass": r(m.body_mass),
        "timestep": m.opt.timestep,
        "solver": int(m.opt.solver),
        "iterations": m.opt.iterations,
        "ls_iterations": m.opt.ls_iterations,
        "noslip_iterations": m.opt.noslip_iterations,
        "density": m.opt.density,
        "viscosity": m.opt.viscosity,
        "mjb_sha256": model_sha256(m),
    }


def _same_versions() -> bool:
    return (mujoco.__version__, importlib.metadata.version("dm_control")) == (
        REFERENCE["mujoco"],
        REFERENCE["dm_control"],
    )


@pytest.mark.parametrize("name", ["rat", "fruitfly"])
@pytest.mark.parametrize("variant", ["plain", "trainable"])
def test_builtin_models_match_the_code_built_reference(name, variant):
    body = get_body(name)
    model = body.compile() if variant == "plain" else body.compile_trainable()
    got, want = fingerprint(model), REFERENCE[name][variant]
    for key, value in want.items():
        if key == "mjb_sha256":
            continue
        if isinstance(value, list) and value and not isinstance(np.ravel(value)[0], str):
            np.testing.assert_allclose(got[key], value, rtol=1e-9, atol=1e-9, err_msg=key)
        else:
            assert got[key] == value, key
    if _same_versions():  # byte for byte: the body hash clips and runs record is unchanged
        assert got["mjb_sha256"] == want["mjb_sha256"]


@pytest.mark.parametrize("name", ["rat", "fruitfly"])
def test_builtin_body_fields_match_the_reference(name):
    body, want = get_body(name), REFERENCE[name]
    assert body.name == name and body.source is None and body.description == want["description"]
    assert list(body.end_effectors) == want["end_effectors"] and list(body.tracked()) == want["tracked"]
    assert (body.max_joint_speed_rad_s, body.max_joint_accel_rad_s2) == (want["max_speed"], want["max_accel"])
    kmap = body.keypoint_map
    if want["keypoints"]:
        assert kmap.body == name and list(kmap.keypoints) == list(want["keypoints"])
        for kp, (b, off) in want["keypoints"].items():
            assert kmap.keypoints[kp][0] == b
            np.testing.assert_allclose(kmap.keypoints[kp][1], off, rtol=1e-12, atol=1e-15)
        assert (list(kmap.trunk_keypoints), kmap.root_keypoint) == (want["trunk"], want["root_kp"])
    else:
        assert kmap is None
    if name == "fruitfly":  # one model: registration and training simulate the same fly
        assert body.compile_trainable() is body.compile()


def test_builtin_default_configs_are_unchanged():
    assert get_body("rat").default_config() == config_lib.load(CONFIGS / "rat.yaml")
    cfg = config_lib.ExperimentConfig()
    default = cfg.replace(env=dataclasses.replace(cfg.env, body="fruitfly")).validate()
    assert get_body("fruitfly").default_config() == default


def test_builtin_body_files_read_as_plain_body_files():
    """The shipped files are ordinary body files: read by path they give the same rat (without the
    module's floor size, which only the registry applies)."""
    rat = load_body_file(FILES / "rat.yaml")
    ref = get_body("rat")
    assert rat.name == str(FILES / "rat.yaml") and rat.label == "rat"
    assert rat.keypoint_map.keypoints == ref.keypoint_map.keypoints
    a, b = rat.compile_trainable(), ref.compile_trainable()
    assert (a.nq, a.nv, a.nu, a.opt.iterations, a.opt.solver) == (b.nq, b.nv, b.nu, 6, mujoco.mjtSolver.mjSOL_CG)
    np.testing.assert_array_equal(a.geom_contype, b.geom_contype)
    np.testing.assert_array_equal(a.geom_conaffinity, b.geom_conaffinity)


def test_package_paths(tmp_path):
    where = "b.yaml"
    xml = resolve_mjcf("package://dm_control/locomotion/walkers/assets/rodent.xml", tmp_path, where)
    assert xml.is_file() and xml.name == "rodent.xml"
    for text, match in [
        ("package://no_such_package_xyz/a.xml", "no package 'no_such_package_xyz' is installed"),
        ("package://dm_control/locomotion/none.xml", r"not found \(searched .*dm_control"),
        ("package://json.decoder/x.xml", "'json.decoder' is a module, not a package"),
    ]:
        with pytest.raises(BodyError, match=f"^{where}: mjcf .*{match}"):
            resolve_mjcf(text, tmp_path, where)
    for bad in ("package://dm_control/../x.xml", "package:///abs.xml", "package://dm_control/", "package://9x/a"):
        with pytest.raises(BodyError, match="is not package://PACKAGE/PATH"):
            parse_body_file({"mjcf": bad})


def test_contacts_and_solver_keys(tmp_path):
    parsed = parse_body_file(
        {
            "mjcf": "m.xml",
            "contacts": {"geoms": ["paw*"], "against": "floor"},
            "solver": {"type": "cg", "iterations": 6, "ls_iterations": 4},
        }
    )
    assert (parsed.contacts, parsed.contacts_against, parsed.solver) == (("paw*",), "floor", ("cg", 6, 4))
    assert parse_body_file({"mjcf": "m.xml", "contacts": ["a"]}).contacts_against == "all"
    for values, match in [
        ({"contacts": {"geoms": ["a"], "against": "flor"}}, "did you mean 'floor'"),
        ({"contacts": {"against": "floor"}}, "contacts needs geoms"),
        ({"contacts": {"geom": ["a"]}}, "did you mean 'geoms'"),
        ({"solver": {"type": "pgs", "iterations": 1, "ls_iterations": 1}}, "solver.type must be one of cg, newton"),
        ({"solver": {"type": "cg"}}, "missing iterations, ls_iterations"),
        ({"solver": {"type": "cg", "iterations": 0, "ls_iterations": 1}}, "solver.iterations must be a whole number"),
    ]:
        with pytest.raises(BodyError, match=match):
            parse_body_file({"mjcf": "m.xml", **values})


def test_floor_only_contacts_need_a_floor(tmp_path):
    (tmp_path / "m.xml").write_text(
        '<mujoco><worldbody><body name="a"><joint name="j"/><geom name="g" size="0.1"/></body></worldbody>'
        '<actuator><motor joint="j"/></actuator></mujoco>'
    )
    (tmp_path / "b.yaml").write_text("mjcf: m.xml\nfloor: false\ncontacts: {geoms: [g], against: floor}\n")
    with pytest.raises(BodyError, match="against: floor, but the model has no geom 'floor'"):
        load_body_file(tmp_path / "b.yaml")


def test_body_hash_ignores_where_the_assets_were_installed(tmp_path):
    """The fly's MJB keeps absolute mesh paths; the same files elsewhere hash the same."""
    import shutil

    import mujoco

    from mimic_mjx.bodies.model import model_sha256

    xml = """<mujoco><asset><mesh name="m" file="{path}"/></asset>
    <worldbody><body><geom type="mesh" mesh="m"/></body></worldbody></mujoco>"""
    stl = tmp_path / "a" / "tet.obj"
    stl.parent.mkdir()
    stl.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    deeper = tmp_path / "a_much_longer_folder_name" / "tet.obj"
    deeper.parent.mkdir()
    shutil.copy(stl, deeper)
    one = mujoco.MjModel.from_xml_string(xml.format(path=stl))
    two = mujoco.MjModel.from_xml_string(xml.format(path=deeper))
    assert bytes(one.paths) != bytes(two.paths)
    assert model_sha256(one) == model_sha256(two)
    other = tmp_path / "b" / "tet.obj"  # another shape (a new path: MuJoCo caches meshes by path)
    other.parent.mkdir()
    other.write_text(stl.read_text().replace("v 0 0 1", "v 0 0 2"))
    assert model_sha256(mujoco.MjModel.from_xml_string(xml.format(path=other))) != model_sha256(one)
    # A model read back from its MJB hashes as the compiled one.
    mjb = tmp_path / "one.mjb"
    mujoco.mj_saveModel(one, str(mjb), None)
    assert model_sha256(mujoco.MjModel.from_binary_path(str(mjb))) == model_sha256(one)
