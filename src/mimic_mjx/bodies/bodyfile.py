"""A body file (YAML beside an MJCF) made into a ``BodyModel``: any animal without writing code.

The keys, their defaults and units are listed in bodies/bodyschema.py; a
stac-mjx model file is read as it is (bodies/stacmjx.py). Loading

1. reads and types the file (unknown keys refused with the nearest known one);
2. builds the model (bodies/mjcf.py: MJCF from its own path, root, scale,
   floor, actuation) and compiles it, once plain and once trainable (the
   ``contacts`` kept, the rest made non-colliding);
3. checks every name against the compiled model (keypoint bodies and sites,
   end effectors, tracked bodies, root and trunk keypoints) with "did you
   mean", and refuses joint trees the tasks cannot bind (ball joints,
   unnamed joints or bodies);
4. derives what the file leaves out from the kinematic tree and says so in
   an info line each (``BodyModel.notes``): end effectors = the leaf bodies,
   tracked bodies = the bodies carrying keypoints, root keypoint = the
   marker nearest the root at rest, trunk keypoints = those on the root body
   (then the nearest in the tree, three at least);
5. reads the default experiment config (a file or inline overrides) and
   validates it, so a typo there fails when the body is read.

Every error is one line that starts with the body file's path.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np

from mimic_mjx.bodies.bodyschema import KEYPOINT_UNITS, BodyFile, KeypointEntry, parse_body_file
from mimic_mjx.bodies.keypoint_maps import KeypointMap
from mimic_mjx.bodies.layout import JointLayout
from mimic_mjx.bodies.mjcf import BuildSettings, build, compile_spec, did_you_mean, resolve_mjcf
from mimic_mjx.bodies.model import BodyModel
from mimic_mjx.bodies.stacmjx import is_stac_model, stac_to_body_values
from mimic_mjx.errors import BindingError, BodyError, ConfigError
from mimic_mjx.files import decode_text, read_bytes, require_regular_file

_MAX_BYTES = 1 << 20  # a body file is a page of YAML; a larger file is the wrong file
_FREE = int(mujoco.mjtJoint.mjJNT_FREE)
Edit = Callable[[mujoco.MjSpec, bool], None]


def read_body_file_bytes(path: Path) -> tuple[Path, bytes]:
    """The resolved path and bytes of a body file; BodyError when it is missing or no file."""
    path = require_regular_file(Path(path).expanduser(), BodyError, "body file").resolve()
    return path, read_bytes(path, BodyError, "body file", _MAX_BYTES)


def read_values(path: Path, raw: bytes, what: str = "body file") -> dict:
    """The YAML mapping of a body file (or stac-mjx model file, or a body file's config file)."""
    import yaml

    text = decode_text(raw, path, BodyError, what)
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BodyError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise BodyError(f"{path} is nested too deeply to be a {what}") from None
    if values is None and what != "body file":  # an empty config: the defaults
        return {}
    if not isinstance(values, dict):
        shown = repr(values) if len(repr(values)) <= 60 else repr(values)[:57] + "..."
        raise BodyError(f"{path}: a {what} is a mapping of keys, got {type(values).__name__} {shown}")
    return values


def load_body_file(path: Path, raw: bytes | None = None, edit: Edit | None = None) -> BodyModel:
    """The body a body file (or a stac-mjx model file) describes; see the module docstring.

    ``edit``: what the file cannot say, applied last to each built spec (a built-in body's module).
    """
    path, raw = read_body_file_bytes(path) if raw is None else (Path(path), raw)
    values = read_values(path, raw)
    notes = []
    stac = is_stac_model(values)
    if stac:
        values, stac_notes = stac_to_body_values(values, path)
        notes += stac_notes
    return body_from_values(values, path, notes, stac=stac, sha256=hashlib.sha256(raw).hexdigest(), edit=edit)


def parse_checked(values: dict, path: Path) -> BodyFile:
    try:
        return parse_body_file(values)
    except BodyError as exc:
        raise BodyError(f"{path}: {exc}") from None


def build_settings(bf: BodyFile, path: Path, *, stac: bool = False, edit: Edit | None = None) -> BuildSettings:
    """How to build the body of the parsed body file at ``path`` (its MJCF found; see bodies/mjcf.py)."""
    where = str(path)
    return BuildSettings(
        mjcf=resolve_mjcf(bf.mjcf, path.parent, where),
        where=where,
        root=bf.root,
        floor=bf.floor,
        actuation=bf.actuation,
        contacts=bf.contacts,
        contacts_floor_only=bf.contacts_against == "floor",
        solver=bf.solver,
        timestep=bf.timestep,
        servos_if_none=stac,
        edit=edit,
    )


def read_settings(path: Path, edit: Edit | None = None) -> tuple[BodyFile, BuildSettings]:
    """The parsed native body file at ``path`` and its build settings: variants of a body build from these."""
    path, raw = read_body_file_bytes(path)
    bf = parse_checked(read_values(path, raw), path)
    return bf, build_settings(bf, path, edit=edit)


def body_from_values(
    values: dict,
    path: Path,
    notes: list,
    *,
    stac: bool = False,
    sha256: str | None = None,
    edit: Edit | None = None,
):
    where = str(path)
    bf = parse_checked(values, path)
    settings = build_settings(bf, path, stac=stac, edit=edit)
    mjcf = settings.mjcf
    model = compile_spec(build(settings, bf.scale, notes=notes), mjcf, where)
    trainable = compile_spec(build(settings, bf.scale, trainable=True), mjcf, where)
    _check_tree(model, where)
    kmap = _keypoint_map(bf, model, where, notes)
    bodies = _body_names(model)
    end_effectors = _named_bodies(bf.end_effectors, bodies, where, "end_effectors") or _leaves(model, where, notes)
    tracked = _named_bodies(bf.tracked_bodies, bodies, where, "tracked_bodies")
    if not tracked and kmap is not None:
        tracked = tuple(b for b in bodies if b in set(kmap.keypoint_bodies().values()))
        notes.append(f"tracked_bodies not given: the {len(tracked)} bodies carrying keypoints")
    elif not tracked:
        notes.append("tracked_bodies not given: the end effectors (no keypoints mark other bodies)")
    config = _config_values(bf, path, notes)
    label = bf.name or path.stem
    free = model.njnt > 0 and model.jnt_type[0] == _FREE
    description = bf.description or (
        f"{label}: {mjcf.name} x{bf.scale:g}, {'free' if free else 'fixed'} root, "
        f"{JointLayout.from_model(model).num_joints} joints, {model.nu} actuators, "
        f"mass {float(model.body_subtreemass[0]):.3g} (MJCF units)"
    )
    body = BodyModel(
        name=str(path),
        description=description,
        build_spec=functools.partial(_build_spec, settings, scale=bf.scale),
        build_trainable_spec=functools.partial(_build_trainable_spec, settings, scale=bf.scale),
        end_effectors=end_effectors,
        keypoint_bodies=kmap.keypoint_bodies() if kmap else {},
        tracked_bodies=tracked,
        default_config_values=config,
        max_joint_speed_rad_s=bf.max_joint_speed_rad_s,
        max_joint_accel_rad_s2=bf.max_joint_accel_rad_s2,
        keypoint_map=kmap,
        keypoint_unit=bf.keypoint_unit,
        source=path,
        source_sha256=sha256,
        label=label,
        notes=tuple(notes),
    )
    # The models just compiled are the ones compile() would build: keep them.
    body._compiled.update(plain=model, trainable=trainable)
    return body


def _build_spec(settings: BuildSettings, scale: float) -> mujoco.MjSpec:
    return build(settings, scale)


def _build_trainable_spec(settings: BuildSettings, scale: float) -> mujoco.MjSpec:
    return build(settings, scale, trainable=True)


def _body_names(model: mujoco.MjModel) -> list[str]:
    return [model.body(b).name for b in range(1, model.nbody)]


def _check_tree(model: mujoco.MjModel, where: str) -> None:
    """Clips bind joints and bodies by name, and the tasks know free roots, hinges and slides only."""
    try:
        JointLayout.from_model(model)
    except BindingError as exc:
        raise BodyError(f"{where}: {exc}") from None
    for kind, count, obj, owner in (
        ("joint", model.njnt, model.joint, lambda j: model.body(int(model.jnt_bodyid[j])).name),
        ("body", model.nbody, model.body, lambda b: model.body(int(model.body_parentid[b])).name),
    ):
        for i in range(1 if kind == "body" else 0, count):
            if not obj(i).name and not (kind == "joint" and model.jnt_type[i] == _FREE):
                raise BodyError(
                    f"{where}: {kind} #{i} (in '{owner(i) or 'world'}') has no name; name every {kind} in the "
                    f"MJCF (clips bind {kind}s by name)"
                )


def _named_bodies(names, bodies: list[str], where: str, key: str) -> tuple[str, ...]:
    for n in names or ():
        if n not in bodies:
            raise BodyError(f"{where}: {key}: no body named '{n}' in the model{did_you_mean(n, bodies)}")
    return tuple(names or ())


def _leaves(model: mujoco.MjModel, where: str, notes: list) -> tuple[str, ...]:
    parents = set(int(p) for p in model.body_parentid[1:])
    leaves = [b for b in range(1, model.nbody) if b not in parents]
    massive = [b for b in leaves if model.body_mass[b] > 0] or leaves
    names = tuple(model.body(b).name for b in massive)
    if not names:
        raise BodyError(f"{where}: the model has no bodies besides the world")
    notes.append(f"end_effectors not given: the leaf bodies of the tree, {', '.join(names)}")
    return names


def _resolve_keypoint(name: str, entry: KeypointEntry, model: mujoco.MjModel, scale: float, where: str):
    """(body name, offset in that body's frame at this scale) of one keypoint."""
    bodies, sites = _body_names(model), [model.site(s).name for s in range(model.nsite)]
    body, site = entry.body, entry.site
    if entry.given_as:  # a bare name: a body if the model has one by that name, else a site
        given = entry.given_as
        body, site = (given, None) if given in bodies else (None, given)
        if body is None and site not in sites:
            hint = did_you_mean(given, bodies + sites)
            raise BodyError(f"{where}: keypoint '{name}': no body or site named '{given}' in the model{hint}")
    offset = np.asarray(entry.offset) * scale
    if body is not None:
        if body not in bodies:
            raise BodyError(
                f"{where}: keypoint '{name}': no body named '{body}' in the model{did_you_mean(body, bodies)}"
            )
        return body, tuple(float(x) for x in offset)
    if site not in sites:
        raise BodyError(f"{where}: keypoint '{name}': no site named '{site}' in the model{did_you_mean(site, sites)}")
    s = model.site(site).id
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.site_quat[s])
    return model.body(int(model.site_bodyid[s])).name, tuple(
        float(x) for x in model.site_pos[s] + rot.reshape(3, 3) @ offset
    )


def _keypoint_map(bf: BodyFile, model: mujoco.MjModel, where: str, notes: list) -> KeypointMap | None:
    if not bf.keypoints:
        notes.append("no keypoints: this body can train on clips but cannot be registered to keypoints")
        for key in ("root_keypoint", "trunk_keypoints"):
            if getattr(bf, key):
                raise BodyError(f"{where}: {key} is given but the body file maps no keypoints")
        return None
    pairs = {n: _resolve_keypoint(n, e, model, bf.scale, where) for n, e in bf.keypoints.items()}
    for n in ([bf.root_keypoint] if bf.root_keypoint else []) + list(bf.trunk_keypoints or ()):
        if n not in pairs:
            raise BodyError(f"{where}: '{n}' is not one of the body file's keypoints{did_you_mean(n, pairs)}")
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    at_rest = {
        n: data.xpos[model.body(b).id] + data.xmat[model.body(b).id].reshape(3, 3) @ np.asarray(off)
        for n, (b, off) in pairs.items()
    }
    root_body = int(model.jnt_bodyid[0]) if model.njnt else 1
    root_kp = bf.root_keypoint
    if root_kp is None:
        root_kp = min(at_rest, key=lambda n: float(np.linalg.norm(at_rest[n] - data.xpos[root_body])))
        notes.append(f"root_keypoint not given: '{root_kp}', the marker nearest the root body at rest")
    trunk = bf.trunk_keypoints
    if trunk is None:
        free = model.njnt > 0 and model.jnt_type[0] == _FREE
        trunk = _default_trunk(model, pairs, at_rest, root_body) if free else (root_kp,)
        why = "the markers on and nearest the root body" if free else "a fixed root needs no alignment"
        notes.append(f"trunk_keypoints not given: {list(trunk)} ({why})")
    return KeypointMap(body=str(where), keypoints=pairs, trunk_keypoints=tuple(trunk), root_keypoint=root_kp)


def _default_trunk(model, pairs: dict, at_rest: dict, root_body: int) -> tuple[str, ...]:
    """Keypoints on the root body, then by tree depth and distance from the root, 3 at least."""

    def depth(b: int) -> int:
        d = 0
        while b != root_body and b > 0:
            b, d = int(model.body_parentid[b]), d + 1
        return d if b == root_body else 10**6

    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    root_pos = data.xpos[root_body]
    ranked = sorted(
        pairs, key=lambda n: (depth(model.body(pairs[n][0]).id), float(np.linalg.norm(at_rest[n] - root_pos)))
    )
    on_root = [n for n in ranked if model.body(pairs[n][0]).id == root_body]
    return tuple(on_root if len(on_root) >= 3 else ranked[: max(3, len(on_root))])


def _config_values(bf: BodyFile, path: Path, notes: list) -> dict:
    """The default experiment config as overrides, validated now so a typo fails when the body is read."""
    from mimic_mjx import config as config_lib

    where = str(path)
    values = {}
    if isinstance(bf.config, str):
        cfg_path = (path.parent / Path(bf.config).expanduser()).resolve()
        require_regular_file(cfg_path, BodyError, f"{where}: config file")
        try:
            values = read_values(cfg_path, cfg_path.read_bytes(), "config file")
        except BodyError as exc:
            raise BodyError(f"{where}: config: {exc}") from None
    elif isinstance(bf.config, dict):
        values = dict(bf.config)
    env = dict(values.get("env") or {})
    if "body" in env:
        notes.append(f"config names env.body={env.pop('body')}; the body file's own body replaces it")
    if bf.substeps is not None:
        if env.get("substeps", bf.substeps) != bf.substeps:
            raise BodyError(
                f"{where}: substeps: {bf.substeps} disagrees with the config's env.substeps: {env['substeps']}"
            )
        env["substeps"] = bf.substeps
    values = {**values, "env": env}
    try:
        config_lib.from_dict({**values, "env": {**env, "body": where}})
    except ConfigError as exc:
        raise BodyError(f"{where}: config: {exc}") from None
    return values


def keypoint_unit_m(body: BodyModel) -> float | None:
    """Metres per unit of the body's keypoint files (None: the files say)."""
    return KEYPOINT_UNITS[body.keypoint_unit] if body.keypoint_unit else None


class _Inline(dict):
    """A mapping written on one line (a keypoint's body and offset)."""


def write_body_file(values: dict, out: Path, header: list[str]) -> None:
    """Write ``values`` as a body file, each header line as a comment on top."""
    import yaml

    from mimic_mjx.files import write_text

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Inline, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
    if isinstance(values.get("keypoints"), dict):
        kps = {k: _Inline(v) if isinstance(v, dict) else v for k, v in values["keypoints"].items()}
        values = {**values, "keypoints": kps}
    text = yaml.dump(values, Dumper=Dumper, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    write_text(out, "".join(f"# {line}\n" for line in header) + text)


def convert_stac_file(src: Path, out: Path) -> tuple[BodyModel, list[str]]:
    """Write the native body file of a stac-mjx model file; the body it describes and the info lines."""
    from mimic_mjx.bodies.stacmjx import relative_mjcf

    src, raw = read_body_file_bytes(src)
    values = read_values(src, raw)
    if not is_stac_model(values):
        raise BodyError(f"{src} is not a stac-mjx model file (its keys are not MJCF_PATH, KEYPOINT_MODEL_PAIRS, ...)")
    values, notes = stac_to_body_values(values, src)
    body = body_from_values(values, src, list(notes), stac=True)
    # Write what was resolved: the MJCF's own actuators, or the servos added for a model without any.
    raw_nu = compile_spec(mujoco.MjSpec.from_file(values["mjcf"]), Path(values["mjcf"]), str(src)).nu
    values = {**relative_mjcf(values, out), "actuation": "model" if raw_nu else "position"}
    header = [f"Body file converted from the stac-mjx model file {src} (mimic bodies convert)."]
    header += [f"{n}" for n in notes]
    write_body_file(values, out, header)
    return body, list(body.notes)
