"""Checksum manifests of checkpoint steps, and the checks a step must pass before it is trusted.

Orbax finalises a step by renaming its temporary folder, but it does not
notice bytes that rot or get truncated later (a full disk, a copy cut short, a
node dying while the files were still in the page cache). After a step is
saved, every file in it is hashed into ``MANIFEST.sha256.json`` inside the
step's folder; a resumed run trusts a step only if its files still match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from mimic_mjx.files import write_text

MANIFEST = "MANIFEST.sha256.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: Path) -> list[Path]:
    # Hidden names are temporary files of an interrupted manifest write, never checkpoint data.
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(step_dir).parts)
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST and not hidden(p))


def write_manifest(step_dir: Path) -> None:
    """Hash every file of a finished step; written atomically, so a crash leaves no half manifest."""
    step_dir = Path(step_dir)
    files = {p.relative_to(step_dir).as_posix(): _sha256(p) for p in _files(step_dir)}
    write_text(step_dir / MANIFEST, json.dumps({"algorithm": "sha256", "files": files}, indent=1))


def has_manifest(step_dir: Path) -> bool:
    return (Path(step_dir) / MANIFEST).is_file()


def manifest_problem(step_dir: Path) -> str | None:
    """Why the step's files do not match its manifest (None: they match)."""
    step_dir = Path(step_dir)
    try:
        listed = json.loads((step_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "its checksum manifest is missing (interrupted while saving?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its checksum manifest is unreadable ({type(exc).__name__})"
    for name, digest in listed.items():
        path = step_dir / name
        try:
            if _sha256(path) != digest:
                return f"{name} does not match its checksum"
        except FileNotFoundError:
            return f"{name} is missing"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
    return None


def read_meta(step_dir: Path) -> dict | None:
    """The step's ``meta`` item read as plain JSON (None when absent or unreadable)."""
    try:
        meta = json.loads((Path(step_dir) / "meta" / "metadata").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def non_finite(tree) -> str | None:
    """The path of the first floating-point leaf holding NaN or inf (None: all finite)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            return jax.tree_util.keystr(path)
    return None
