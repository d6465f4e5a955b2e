"""`mimic demo --body worm|stick_insect`: generated clips, a short training, held-out evaluation, report."""

from __future__ import annotations

import json

import pytest

from mimic_mjx.demo import DEMO_BODIES, demo_clips, run_demo
from mimic_mjx.errors import MimicError

FORELIMB_DEMO_KEYS = {
    "train_wall_s",
    "train_steps_per_s",
    "env_steps",
    "heldout_joint_rmse_deg",
    "heldout_wrist_error_mm",
    "heldout_fraction_tracked",
    "plots",
    "run_dir",
    "latent_components_95",
    "report",
    "video",
}


def test_heldout_clips_come_from_parameters_the_training_never_saw():
    from mimic_mjx.data.undulation import TRAINING

    train, heldout = demo_clips("worm")
    lo, hi = TRAINING["crawl"]["frequency_hz"]
    for c in heldout:  # names carry the generator's parameters
        f = float(c.name.split("_f")[1].split("_")[0])
        assert not lo <= f <= hi, c.name
    assert {c.body for c in train + heldout} == {"worm"}
    train, heldout = demo_clips("stick_insect")
    assert not {c.name for c in train} & {c.name for c in heldout}
    with pytest.raises(MimicError, match="no demo for body 'rat'.*mouse_forelimb, worm, stick_insect"):
        demo_clips("rat")


@pytest.mark.slow
@pytest.mark.parametrize("body", ["worm", "stick_insect"])
def test_demo_runs_end_to_end(body, tmp_path):
    out = tmp_path / body
    result = run_demo(out, minutes=0.05, body=body, log=lambda m: None)
    assert FORELIMB_DEMO_KEYS <= set(result) and result["body"] == body
    assert 0.0 <= result["heldout_fraction_tracked"] <= 1.0 and result["heldout_body_error_mm"] > 0
    assert json.loads((out / "summary.json").read_text())["body"] == body
    what = DEMO_BODIES[body]
    assert (out / "clips" / f"heldout_{what}s.h5").is_file() and (out / "report.html").is_file()


def test_clips_of_one_animal_are_refused_by_the_other():
    from mimic_mjx.bodies import get_body
    from mimic_mjx.errors import BindingError
    from mimic_mjx.training.experiment import build_env

    worm, _ = demo_clips("worm")
    with pytest.raises(BindingError, match="body 'worm'.*experiment uses body 'stick_insect'"):
        build_env(get_body("stick_insect").default_config(), worm[:1])
