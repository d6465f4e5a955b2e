"""Choose and build a physics backend by name (``native``, ``mjx``, ``warp``, or ``auto``); see ``physics``."""

from __future__ import annotations

import importlib.util

import jax
import mujoco

from mimic_mjx.config import BACKENDS
from mimic_mjx.environments.native import NativeBackend
from mimic_mjx.environments.physics import MjxBackend
from mimic_mjx.errors import BackendError


def default_backend(body: str = "") -> str:
    """``mjx`` when JAX has a GPU; on a CPU the body's fastest measured backend (else native)."""
    if jax.default_backend() == "gpu":
        return "mjx"
    if body:
        from mimic_mjx.bodies import get_body

        return get_body(body).cpu_backend
    return "native"


def warp_installed() -> bool:
    """MJX ships MuJoCo Warp; it needs NVIDIA's ``warp`` package (``warp-lang``) to run."""
    if importlib.util.find_spec("warp") is None:
        return False
    from mujoco.mjx import warp as mjx_warp

    return bool(getattr(mjx_warp, "WARP_INSTALLED", False))


def make_backend(name: str, model: mujoco.MjModel, body: str = "", threads: int = 0):
    """Build the backend ``name`` for ``model`` (a copy is kept)."""
    if name == "auto":
        name = default_backend(body)
    if name == "native":
        return NativeBackend(model, threads)
    if name == "mjx":
        return MjxBackend(model, "jax", body)
    if name == "warp":
        if not warp_installed():
            raise BackendError(
                'backend "warp" needs NVIDIA Warp, which is not installed; install it with '
                'pip install "mujoco-mjx[warp]==3.17.0" (or .venv/bin/pip install -e ".[warp]"; an '
                "NVIDIA GPU is recommended), or use env.backend=mjx or env.backend=native"
            )
        return MjxBackend(model, "warp", body)
    raise BackendError(f"unknown physics backend '{name}'; choose one of {', '.join(BACKENDS)}")
