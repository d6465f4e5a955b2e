"""Shared fixtures: real-data location and small, fast experiment configs."""

from __future__ import annotations

from pathlib import Path

import pytest

# Imported first so that its environment set-up (XLA flags, compilation cache,
# headless GL backend) happens before any test imports jax or mujoco.
import mimic_mjx  # noqa: F401

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOUSE_ARM = DATA / "mouse_arm"


def mouse_arm_files(n: int | None = None) -> list[Path]:
    files = sorted(MOUSE_ARM.glob("trial*_ik.h5"))
    if not files:
        pytest.skip(f"real data not found in {MOUSE_ARM} (expected ../shared/data beside the project)")
    return files[:n] if n else files


def tiny_config_dict() -> dict:
    """Small enough to compile and run in seconds on a 2-core CPU."""
    return {
        "name": "tiny",
        "agent": {
            "encoder_layers": [16],
            "decoder_layers": [16],
            "value_layers": [16],
            "latent_dim": 4,
            "kl_ramp_steps": 100,
        },
        "ppo": {"num_envs": 8, "unroll_length": 4, "num_minibatches": 2, "update_epochs": 1},
        "train": {"total_steps": 96, "checkpoint_every_updates": 1, "log_every_updates": 1},
    }


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Free each test module's compiled XLA programs when it ends.

    One pytest process runs hundreds of jit-compiled experiments; holding all
    of them grew the process until forking ffmpeg (video tests) failed with
    ENOMEM late in the suite.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
