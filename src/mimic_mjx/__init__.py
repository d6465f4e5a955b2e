"""mimic-mjx: neuromechanical emulation of animal behaviour in MuJoCo/MJX."""

import os as _os

from mimic_mjx.version import __version__ as __version__

# XLA's CPU fusion emitters make compiling MJX for deep kinematic trees take
# minutes (see MEASURED.md); the flag only affects the CPU backend.
_flag = "--xla_cpu_use_fusion_emitters=false"
if _flag.split("=")[0] not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (_os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
# Persistent compilation cache: the second run of an experiment skips XLA.
_os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", _os.path.join(_os.path.expanduser("~"), ".cache", "mimic-mjx", "jax")
)
_os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")

# Headless rendering: MuJoCo picks its GL backend when first imported, and an
# unusable choice breaks that import. Without a display, prefer software OSMesa
# where installed, else EGL; a choice that cannot load is replaced (gl.py).
from mimic_mjx import gl as _gl  # noqa: E402

_gl.choose_backend()

import jax as _jax  # noqa: E402  (after the environment variables above)

# The variable is read when jax is first imported; set it explicitly in case
# jax was imported before this package.
_jax.config.update("jax_compilation_cache_dir", _os.environ["JAX_COMPILATION_CACHE_DIR"])

# MJX prints a line to stdout on import when NVIDIA Warp (an optional backend)
# is absent; keep that out of every command's output.
import contextlib as _contextlib  # noqa: E402
import importlib.util as _ilu  # noqa: E402
import io as _io  # noqa: E402

if _ilu.find_spec("warp") is None:
    with _contextlib.redirect_stdout(_io.StringIO()):
        import mujoco.mjx  # noqa: F401


def __getattr__(name):
    # ``mimic_mjx.load_policy`` without importing flax and the agents on ``import mimic_mjx``.
    if name == "load_policy":
        from mimic_mjx.training.checkpoint import load_policy

        return load_policy
    raise AttributeError(f"module 'mimic_mjx' has no attribute {name!r}")
