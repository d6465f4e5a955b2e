"""stac-mjx model files read as they are: dm_control's rodent through a stac-mjx-style YAML.

The YAML is written here in stac-mjx's layout (configs/model/rodent.yaml, its
MJCF_PATH relative to the repository root two folders up) with the rat23
keypoints and real dm_control body names; none of stac-mjx's files is used.
"""

from __future__ import annotations

import numpy as np
import pytest

from mimic_mjx.bodies import get_body
from mimic_mjx.bodies.bodyfile import convert_stac_file, load_body_file
from mimic_mjx.bodies.rat import rodent_xml_path
from mimic_mjx.bodies.skeletons import RAT23_NAMES
from test_bodyfile import write

STAC_OFFSETS = {"SpineF": "-0.015 0. 0.", "HipL": "-0.015 0.015 0.", "HipR": "-0.015 -0.015 0."}
RAT23_BODIES = dict(
    zip(
        RAT23_NAMES,
        (
            *("skull", "skull", "skull", "vertebra_cervical_5", "vertebra_1", "pelvis", "pelvis"),
            *("scapula_L", "upper_arm_L", "lower_arm_L", "hand_L", "scapula_R", "upper_arm_R", "lower_arm_R"),
            *("hand_R", "pelvis", "upper_leg_L", "lower_leg_L", "foot_L", "pelvis", "upper_leg_R", "lower_leg_R"),
            "foot_R",
        ),
        strict=True,
    )
)


def stac_yaml(mjcf: str, extra: str = "") -> str:
    pairs = "".join(f"  {k}: {b}\n" for k, b in sorted(RAT23_BODIES.items()))
    offsets = "".join(f"  {k}: {v}\n" for k, v in STAC_OFFSETS.items())
    return (
        f'MJCF_PATH: "{mjcf}"\nFTOL: 1.0e-04\nROOT_FTOL: 1.0e-05\nN_ITERS: 6\nN_ITER_Q: 400\n'
        f"KP_NAMES: [{', '.join(RAT23_NAMES)}]\nKEYPOINT_MODEL_PAIRS:\n{pairs}"
        f"KEYPOINT_INITIAL_OFFSETS:\n{offsets}ROOT_OPTIMIZATION_KEYPOINT: SpineL\n"
        "TRUNK_OPTIMIZATION_KEYPOINTS: [SpineF, SpineL, SpineM, HipL, HipR]\n"
        "INDIVIDUAL_PART_OPTIMIZATION:\n  head: [atlas, cervical]\nSCALE_FACTOR: 0.9\nMOCAP_SCALE_FACTOR: 0.001\n"
        f"SITES_TO_REGULARIZE: [SpineF]\nRENDER_FPS: 50\nN_SAMPLE_FRAMES: 100\nM_REG_COEF: 1\n{extra}"
    )


@pytest.fixture(scope="module")
def stac_rodent(tmp_path_factory):
    """A stac-mjx layout: configs/model/rodent.yaml, MJCF_PATH relative to the repository root."""
    root = tmp_path_factory.mktemp("stac")
    (root / "models").mkdir()
    (root / "models" / "rodent.xml").symlink_to(rodent_xml_path())
    (root / "models" / "rodent_walker_skin.skn").symlink_to(rodent_xml_path().parent / "rodent_walker_skin.skn")
    (root / "configs" / "model").mkdir(parents=True)
    path = write(root / "configs" / "model", "rodent.yaml", stac_yaml("models/rodent.xml"))
    return path, load_body_file(path)


def test_stac_model_file_read_as_it_is(stac_rodent):
    path, body = stac_rodent
    kmap = body.keypoint_map
    assert kmap.names == RAT23_NAMES and kmap.keypoint_bodies() == RAT23_BODIES
    # stac-mjx places its marker sites at the offsets as written, on the scaled body.
    assert np.allclose(kmap.keypoints["HipL"][1], (-0.015, 0.015, 0.0))
    assert kmap.root_keypoint == "SpineL" and kmap.trunk_keypoints == ("SpineF", "SpineL", "SpineM", "HipL", "HipR")
    assert body.keypoint_unit == "mm" and body.label == "rodent"
    model = body.compile()
    rat = get_body("rat").compile()
    assert model.nu == rat.nu == 38 and model.nq == rat.nq - 7  # the MJCF has no free joint: fixed, as in stac-mjx
    np.testing.assert_allclose(model.body_mass.sum(), rat.body_mass.sum())  # scaled like the built-in rat
    ignored = [n for n in body.notes if "no meaning here" in n]
    assert len(ignored) == 1
    for key in ("FTOL", "N_ITERS", "N_ITER_Q", "INDIVIDUAL_PART_OPTIMIZATION", "SITES_TO_REGULARIZE", "M_REG_COEF"):
        assert key in ignored[0]


def test_stac_convert_writes_an_equivalent_body_file(stac_rodent, tmp_path):
    path, body = stac_rodent
    out = tmp_path / "elsewhere" / "rodent_body.yaml"
    out.parent.mkdir()
    converted, notes = convert_stac_file(path, out)
    text = out.read_text()
    assert "mjcf: ../" in text and "keypoint_unit: mm" in text and "actuation: model" in text
    again = load_body_file(out)
    assert again.keypoint_map.names == body.keypoint_map.names
    for k, (b, off) in body.keypoint_map.keypoints.items():
        assert again.keypoint_map.keypoints[k][0] == b and np.allclose(again.keypoint_map.keypoints[k][1], off)
    assert again.keypoint_map.trunk_keypoints == body.keypoint_map.trunk_keypoints
    assert again.compile().nq == body.compile().nq and converted.keypoint_map.names == body.keypoint_map.names
    assert any("no meaning here" in n for n in notes)


def test_cli_convert_and_check(stac_rodent, tmp_path, capsys):
    from mimic_mjx.cli.main import main

    path, _ = stac_rodent
    out = tmp_path / "rodent.yaml"
    assert main(["bodies", "convert", str(path), "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    png = tmp_path / "rodent.png"
    assert main(["bodies", "check", str(out), "--no-mjx", "--png", str(png)]) == 0
    text = capsys.readouterr().out
    for line in ("degrees of freedom: 67", "actuators: 38 (38 position)", "keypoints: 23", "native  stable", "steps/s"):
        assert line in text, text
    assert "rest-pose picture: wrote" in text and png.is_file() or "rest-pose picture: not drawn" in text
    assert main(["bodies"]) == 0 and "rat:" in capsys.readouterr().out
