"""A body kept with what was made from it: the compiled model (MJB) and the names the tasks need.

A run folder keeps the body it trains in ``body/`` (docs/reliability.md), so
that it can be evaluated, rolled out, rendered and exported after the body's
own files are moved, edited or deleted:

- ``model.mjb``: the model the run simulates (``BodyModel.compile_trainable()``),
  meshes and textures included, as ``mujoco.mj_saveModel`` writes it;
- ``body.json``: the resolved ``BodyModel`` fields (name, end effectors,
  tracked bodies, keypoint map, bounds, ...), the body's hash (``body_hash``:
  SHA-256 of its registration model's MJB, what clips record), the hash of
  ``model.mjb``, and where the body came from;
- ``body.yaml``: a copy of the body file, for body files (``body.json`` names
  the path it was copied from).

``load_stored_body`` makes a ``BodyModel`` of it again under the body's own
name, so clips registered to the body bind to it as before. It holds compiled
models only: registering keypoints needs the body file itself.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies.keypoint_maps import KeypointMap
from mimic_mjx.bodies.model import BodyModel, model_bytes, model_sha256
from mimic_mjx.errors import BodyError
from mimic_mjx.files import atomic_path, read_text, write_text

FORMAT, FORMAT_VERSION = "mimic-stored-body", 1
MODEL_FILE, META_FILE, SOURCE_COPY = "model.mjb", "body.json", "body.yaml"

# BodyModel fields stored as they are (JSON values); the keypoint map and the hashes are stored apart.
_PLAIN_FIELDS = (
    "name",
    "label",
    "description",
    "end_effectors",
    "tracked_bodies",
    "keypoint_bodies",
    "cpu_backend",
    "default_config_file",
    "default_config_values",
    "max_joint_speed_rad_s",
    "max_joint_accel_rad_s2",
    "keypoint_unit",
)


def body_meta(body: BodyModel, model_sha256: str) -> dict:
    """What ``body.json`` holds for ``body`` whose simulated model's MJB hashes to ``model_sha256``."""
    kmap = body.keypoint_map
    fields = {f: getattr(body, f) for f in _PLAIN_FIELDS}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **fields,
        "keypoint_map": None
        if kmap is None
        else {
            "body": kmap.body,
            "keypoints": {k: [b, list(off)] for k, (b, off) in kmap.keypoints.items()},
            "trunk_keypoints": list(kmap.trunk_keypoints),
            "root_keypoint": kmap.root_keypoint,
        },
        "body_hash": body.body_hash(),
        "model_sha256": model_sha256,
        "source": None if body.source is None else str(body.source),
        "source_sha256": body.source_sha256,
        "mujoco_version": mujoco.__version__,
    }


def save_body(body: BodyModel, folder: Path) -> dict:
    """Write ``body`` into ``folder`` (see the module docstring); the metadata written."""
    folder = Path(folder)
    model = body.compile_trainable()
    raw = model_bytes(model)
    meta = body_meta(body, model_sha256(model))
    meta["file_sha256"] = hashlib.sha256(raw).hexdigest()  # the stored file's own integrity
    with atomic_path(folder / MODEL_FILE) as tmp:
        tmp.write_bytes(raw)
    if body.source is not None and body.source.is_file():
        with atomic_path(folder / SOURCE_COPY) as tmp:
            tmp.write_bytes(body.source.read_bytes())
        meta["source_copy"] = SOURCE_COPY
    # Last: a folder with body.json holds a complete body.
    write_text(folder / META_FILE, json.dumps(meta, indent=1) + "\n")
    return meta


def has_stored_body(folder: Path) -> bool:
    return (Path(folder) / META_FILE).is_file()


def read_meta(folder: Path) -> dict:
    path = Path(folder) / META_FILE
    try:
        meta = json.loads(read_text(path, BodyError, "stored body"))
    except json.JSONDecodeError as exc:
        raise BodyError(f"{path} is damaged ({exc}); the run's stored body cannot be read") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BodyError(f"{path} is not a stored body (format {FORMAT!r}); was it written by mimic-mjx?")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise BodyError(f"{path} was written by a newer mimic-mjx (stored body version {meta['format_version']})")
    return meta


def load_stored_body(folder: Path) -> tuple[BodyModel, dict]:
    """The body stored in ``folder`` and its metadata; BodyError when damaged."""
    folder = Path(folder)
    meta = read_meta(folder)
    mjb = folder / MODEL_FILE
    if not mjb.is_file():
        raise BodyError(f"{mjb} is missing; the run's stored body is incomplete")
    raw = mjb.read_bytes()
    if hashlib.sha256(raw).hexdigest() != meta.get("file_sha256", meta.get("model_sha256")):
        raise BodyError(f"{mjb} does not match the hash in {folder / META_FILE}: the file is damaged")
    try:
        model = mujoco.MjModel.from_binary_path(str(mjb))
    except Exception as exc:  # an MJB of another MuJoCo version, or damaged past the hash
        why = " ".join(str(exc).split())
        raise BodyError(f"{mjb} cannot be loaded by MuJoCo {mujoco.__version__}: {why}") from None
    kmap = meta.get("keypoint_map")
    values = {f: meta.get(f) for f in _PLAIN_FIELDS if meta.get(f) is not None}
    for key in ("end_effectors", "tracked_bodies"):
        values[key] = tuple(values.get(key, ()))
    body = BodyModel(
        **values,
        build_spec=_no_spec(meta.get("name", "?"), folder),
        keypoint_map=None
        if kmap is None
        else KeypointMap(
            body=kmap["body"],
            keypoints={k: (b, tuple(off)) for k, (b, off) in kmap["keypoints"].items()},
            trunk_keypoints=tuple(kmap["trunk_keypoints"]),
            root_keypoint=kmap["root_keypoint"],
        ),
        source=Path(folder / SOURCE_COPY) if meta.get("source_copy") else None,
        source_sha256=meta.get("source_sha256"),
        known_hash=meta.get("body_hash"),
        notes=(f"the body stored in {folder}",),
    )
    # The stored model has the registration model's names; it serves both (nothing re-registers with it).
    body._compiled.update(plain=model, trainable=model)
    return body, meta


def _no_spec(name: str, folder: Path):
    def build_spec(**_):
        raise BodyError(
            f"the body stored in {folder} holds its compiled model only; register keypoints with the body "
            f"itself ('{name}')"
        )

    return build_spec


def field_changes(meta: dict, current: BodyModel) -> list[str]:
    """The resolved fields (not the model) that differ between a stored body and ``current``."""
    now = body_meta(current, meta.get("model_sha256", ""))
    fields = ("end_effectors", "tracked_bodies", "keypoint_map", "max_joint_speed_rad_s", "max_joint_accel_rad_s2")
    return [f.replace("_", " ") for f in fields if _jsonable(now.get(f)) != _jsonable(meta.get(f))]


def body_changes(stored: BodyModel, meta: dict, current: BodyModel) -> list[str]:
    """What differs between a stored body and the body its name gives now, one short item each."""
    out = []
    old, new = stored.compile_trainable(), current.compile_trainable()
    if stored.simulated_hash() == current.simulated_hash():
        return field_changes(meta, current)
    for what, kind, count in (
        ("joints", mujoco.mjtObj.mjOBJ_JOINT, "njnt"),
        ("actuators", mujoco.mjtObj.mjOBJ_ACTUATOR, "nu"),
        ("bodies", mujoco.mjtObj.mjOBJ_BODY, "nbody"),
        ("geoms", mujoco.mjtObj.mjOBJ_GEOM, "ngeom"),
    ):
        a, b = _names(old, kind, getattr(old, count)), _names(new, kind, getattr(new, count))
        if a != b:
            gone, added = [n for n in a if n not in b], [n for n in b if n not in a]
            parts = [f"{len(a)} -> {len(b)}"] + ([f"removed {_few(gone)}"] if gone else [])
            parts += [f"added {_few(added)}"] if added else []
            out.append(f"{what} ({', '.join(parts) if gone or added or len(a) != len(b) else 'reordered'})")
    if not out:  # same objects: name the model fields whose values changed
        out += _changed_arrays(old, new)
    return out + field_changes(meta, current)


#: MjModel fields under the names a user knows them by; others are listed by their MuJoCo name.
_LABELS = {
    "body_mass": "masses",
    "body_inertia": "inertias",
    "body_pos": "body positions",
    "body_quat": "body orientations",
    "jnt_range": "joint ranges",
    "jnt_axis": "joint axes",
    "jnt_stiffness": "joint stiffness",
    "dof_damping": "joint damping",
    "dof_armature": "armature",
    "actuator_gainprm": "actuator gains",
    "actuator_biasprm": "actuator biases",
    "actuator_ctrlrange": "control ranges",
    "actuator_forcerange": "force ranges",
    "geom_size": "geom sizes",
    "geom_contype": "contacts",
    "geom_conaffinity": "contacts",
    "opt_timestep": "timestep",
    "mesh_vert": "meshes",
}


def _changed_arrays(old: mujoco.MjModel, new: mujoco.MjModel) -> list[str]:
    out = []
    mass = _mass_change(old, new)
    for name in sorted(n for n in dir(old) if not n.startswith("_")):
        try:
            a, b = getattr(old, name), getattr(new, name)
        except Exception:  # properties that need arguments or are not arrays
            continue
        if not isinstance(a, np.ndarray) or name.startswith("name"):
            continue
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            label = mass if name == "body_mass" and mass else _LABELS.get(name, name)
            if label not in out:
                out.append(label)
    for field in ("timestep", "gravity"):
        if not np.array_equal(getattr(old.opt, field), getattr(new.opt, field)):
            out.append(field)
    return out


def _mass_change(old: mujoco.MjModel, new: mujoco.MjModel) -> str:
    """'masses (link2 0.1 -> 0.2)': the bodies whose mass changed, a few of them."""
    if old.nbody != new.nbody:
        return ""
    idx = np.flatnonzero(old.body_mass != new.body_mass)
    items = [f"{old.body(int(i)).name} {old.body_mass[i]:.4g} -> {new.body_mass[i]:.4g}" for i in idx[:3]]
    return f"masses ({', '.join(items)}{', ...' if len(idx) > 3 else ''})" if len(idx) else ""


def _names(model, kind, n: int) -> list[str]:
    return [mujoco.mj_id2name(model, kind, i) or f"#{i}" for i in range(n)]


def _few(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _jsonable(value):
    return json.loads(json.dumps(value))


def short_hash(h: str | None) -> str:
    return (h or "none")[:12]
