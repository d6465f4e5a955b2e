"""ONNX export of a trained controller (``mimic export``, in ``cli/export.py``, reads it from a run folder).

The deterministic controller (what ``make_inference_fn(agent, deterministic=True)``
computes) is written as a plain ONNX graph, so it runs without JAX (onnxruntime,
C++, a robot or a game engine):

- full controller, inputs ``reference_obs`` (batch, ref_obs_size) and
  ``proprio_obs`` (batch, prop_obs_size); outputs ``latent_mean``, ``action``
  and ``ctrl``;
- ``decoder_only``: inputs ``latent`` (batch, latent_dim) and ``proprio_obs``;
  outputs ``action`` and ``ctrl``: the low-level controller, for a new
  high-level policy that emits intentions.

A recurrent decoder (``agent.decoder: lstm | gru``) adds the input
``decoder_state`` (batch, S) and the output ``next_decoder_state`` (batch, S):
the caller feeds zeros at an episode's first step and each step's
``next_decoder_state`` to the next. S is ``2 * recurrent_size`` for an LSTM
(``[cell, hidden]``) and ``recurrent_size`` for a GRU (``hidden``); the
metadata names the decoder, S and the layout. The cell is flax's
``LSTMCell``/``GRUCell`` written out gate by gate.

Observations are raw, as the task builds them: the run's normalisers
(``(x - mean) / std`` clipped to +-10) are part of the graph. ``action`` is the
unbounded action mean; ``ctrl`` is what the task applies to the actuators,
``lo + 0.5 (tanh(action) + 1) (hi - lo)`` with the body's ctrlrange.

The graph is built with the ``onnx`` package's helper API from the parameters
(MatMul, Add, Sigmoid and Mul for swish, Sub/Div/Clip for normalisation, Tanh
for controls): the networks are small MLPs, so the graph is the same arithmetic
as the JAX code, op for op, in float32. (jax2onnx 0.17.1 converts these
functions with jax 0.10.2 but requires orbax-checkpoint < 0.11.37, which
conflicts with this project's pin.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mimic_mjx.errors import MimicError

OPSET = 17  # onnxruntime >= 1.14 runs it; IR version 8 keeps older runtimes able to load the file
IR_VERSION = 8
NORM_CLIP = 10.0  # RunningStats.normalize's default clip
MODEL_DOC = (
    "mimic-mjx imitation controller (deterministic: latent and action means). Observations are raw, as the task "
    "builds them; the run's normalisers are in the graph. action: unbounded action mean; ctrl: actuator controls "
    "lo + 0.5 (tanh(action) + 1) (hi - lo). A recurrent decoder adds the input decoder_state (zeros at an episode's "
    "first step) and the output next_decoder_state (the next step's decoder_state). See metadata_props for body, "
    "sizes, decoder state layout, actuator names and provenance."
)

DOCS = {
    "reference_obs": "raw reference observation (look-ahead of the clip relative to the body), as the task builds it; "
    "normalised inside the graph with the run's statistics",
    "proprio_obs": "raw proprioceptive observation (joint angles and velocities, activations, actuator forces, "
    "previous controls, body positions), as the task builds it; normalised inside the graph",
    "latent": "latent intention fed to the decoder (the encoder's latent mean in the full controller)",
    "latent_mean": "mean of the encoder's Gaussian latent (the intention the decoder receives)",
    "action": "policy action mean, unbounded (the task squashes it into the control range)",
    "decoder_state": "recurrent decoder's state before this step (zeros at an episode's first step; "
    "metadata decoder_state_layout gives its halves)",
    "next_decoder_state": "recurrent decoder's state after this step: feed it as decoder_state at the next step",
    "ctrl": "actuator controls as the task applies them: lo + 0.5 * (tanh(action) + 1) * (hi - lo) "
    "(metadata action_mode relative: clip(joint angle + range * tanh(action), lo, hi)), "
    "actuators in the order of metadata actuator_names",
}


_STATE_LAYOUT = {
    "mlp": "none (stateless decoder)",
    "lstm": "[cell (columns 0..{h}-1), hidden (columns {h}..2*{h}-1)], zeros at an episode's first step",
    "gru": "hidden ({h} columns), zeros at an episode's first step",
}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise MimicError(
            "ONNX export needs the onnx package; install it with .venv/bin/pip install onnx==1.23.2"
        ) from None
    return onnx


def _dense_layers(params: dict, n_hidden: int) -> list[tuple[np.ndarray, np.ndarray]]:
    names = [f"dense_{i}" for i in range(n_hidden)] + ["out"]
    return [(np.asarray(params[n]["kernel"], np.float32), np.asarray(params[n]["bias"], np.float32)) for n in names]


class _Graph:
    """Nodes and constants of one ONNX graph, with fresh names."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = f"{name}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def columns(self, x: str, start: int, stop: int) -> str:
        ints = lambda n, v: self.const(n, [v], np.int64)
        return self.op("Slice", x, ints("start", start), ints("stop", stop), ints("axis", -1))

    def dense(self, x: str, layer: dict, name: str) -> str:
        y = self.op("MatMul", x, self.const(f"{name}_w", np.asarray(layer["kernel"], np.float32)))
        return (
            self.op("Add", y, self.const(f"{name}_b", np.asarray(layer["bias"], np.float32))) if "bias" in layer else y
        )

    def lstm(self, x: str, state: str, cell: dict, size: int) -> tuple[str, str]:
        """flax's LSTMCell: (hidden, new state [cell, hidden])."""
        c, h = self.columns(state, 0, size), self.columns(state, size, 2 * size)
        pre = lambda k: self.op(
            "Add", self.dense(x, cell[f"i{k}"], f"lstm_i{k}"), self.dense(h, cell[f"h{k}"], f"lstm_h{k}")
        )
        i, f, o = (self.op("Sigmoid", pre(k)) for k in "ifo")
        new_c = self.op("Add", self.op("Mul", f, c), self.op("Mul", i, self.op("Tanh", pre("g"))))
        new_h = self.op("Mul", o, self.op("Tanh", new_c))
        return new_h, self.op("Concat", new_c, new_h, axis=-1, out="next_decoder_state")

    def gru(self, x: str, h: str, cell: dict) -> tuple[str, str]:
        """flax's GRUCell: (hidden, new state = hidden)."""
        pre = lambda k: self.op(
            "Add", self.dense(x, cell[f"i{k}"], f"gru_i{k}"), self.dense(h, cell[f"h{k}"], f"gru_h{k}")
        )
        r, z = self.op("Sigmoid", pre("r")), self.op("Sigmoid", pre("z"))
        gated = self.op("Mul", r, self.dense(h, cell["hn"], "gru_hn"))
        n = self.op("Tanh", self.op("Add", self.dense(x, cell["in"], "gru_in"), gated))
        keep = self.op("Mul", self.op("Sub", self.const("one", 1.0), z), n)
        new_h = self.op("Add", keep, self.op("Mul", z, h))
        return new_h, self.op("Identity", new_h, out="next_decoder_state")

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        from onnx import helper

        self._n += 1
        out = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{op_type}_{self._n}", **attrs))
        return out

    def normalize(self, x: str, stats, name: str) -> str:
        # The very arithmetic of RunningStats.normalize, on float32 constants JAX computed.
        mean, std = np.asarray(stats.mean, np.float32), np.asarray(stats.std, np.float32)
        z = self.op("Div", self.op("Sub", x, self.const(f"{name}_mean", mean)), self.const(f"{name}_std", std))
        return self.op("Clip", z, self.const("clip_lo", np.float32(-NORM_CLIP)), self.const("clip_hi", NORM_CLIP))

    def mlp(self, x: str, layers, name: str, out: str | None = None) -> str:
        for i, (w, b) in enumerate(layers):
            last = i == len(layers) - 1
            y = self.op("Add", self.op("MatMul", x, self.const(f"{name}_{i}_w", w)), self.const(f"{name}_{i}_b", b))
            if last:
                return self.op("Identity", y, out=out) if out else y
            x = self.op("Mul", y, self.op("Sigmoid", y))  # swish


def export_policy_onnx(
    policy,
    out: str | Path,
    ctrlrange,
    decoder_only: bool = False,
    actuator_names=None,
    metadata: dict | None = None,
    relative: tuple[float, np.ndarray] | None = None,
) -> dict:
    """Write ``policy``'s deterministic controller (or its decoder alone) as ONNX to ``out``.

    ``ctrlrange`` (action_size, 2): the actuators' control range, for the
    ``ctrl`` output. ``relative`` (``env.action: relative``): the action range
    (rad) and, per actuator, the column of ``proprio_obs`` holding its joint's
    angle; ``ctrl`` is then that angle plus range x tanh(action), clipped.
    Returns the inputs, outputs (name -> shape) and metadata written.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper

    agent, pp = policy.agent, policy.params
    ctrlrange = np.asarray(ctrlrange, np.float32)
    if ctrlrange.shape != (policy.action_size, 2):
        raise MimicError(f"ctrlrange has shape {ctrlrange.shape}; the policy has {policy.action_size} actions")
    latent_dim = int(agent.latent_dim)
    g = _Graph()
    tensor = lambda name, size: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", int(size)])
    inputs, outputs = [], []
    if decoder_only:
        latent = "latent"
        inputs.append(tensor("latent", latent_dim))
    else:
        inputs.append(tensor("reference_obs", policy.ref_obs_size))
        enc = _dense_layers(pp.params["encoder"], len(agent.encoder_layers))
        # The encoder's last layer gives [mean, log_var]: keep the mean's columns.
        enc[-1] = (enc[-1][0][:, :latent_dim], enc[-1][1][:latent_dim])
        ref_n = g.normalize("reference_obs", pp.ref_stats, "ref")
        latent = g.mlp(ref_n, enc, "encoder", out="latent_mean")
        outputs.append(tensor("latent_mean", latent_dim))
    inputs.append(tensor("proprio_obs", policy.prop_obs_size))
    prop_n = g.normalize("proprio_obs", pp.prop_stats, "prop")
    dec_in = g.op("Concat", latent, prop_n, axis=-1)
    dec, kind, size = pp.params["decoder"], agent.decoder_kind, int(agent.state_size)
    if kind != "mlp":
        inputs.append(tensor("decoder_state", size))
        cell = dec["cell"]
        step = (
            g.lstm(dec_in, "decoder_state", cell, size // 2) if kind == "lstm" else g.gru(dec_in, "decoder_state", cell)
        )
        dec_in = step[0]
    action = g.mlp(dec_in, _dense_layers(dec, len(agent.decoder_layers)), "decoder", out="action")
    lo, hi = ctrlrange[:, 0], ctrlrange[:, 1]
    if relative is None:
        squashed = g.op("Mul", g.const("half", 0.5), g.op("Add", g.op("Tanh", action), g.const("one", 1.0)))
        g.op("Add", g.const("ctrl_lo", lo), g.op("Mul", squashed, g.const("ctrl_span", hi - lo)), out="ctrl")
    else:
        span, columns = relative
        from onnx import numpy_helper

        g.inits.append(numpy_helper.from_array(np.asarray(columns, np.int64), "joint_columns"))
        q = g.op("Gather", "proprio_obs", "joint_columns", axis=1)
        target = g.op("Add", q, g.op("Mul", g.const("action_range", np.float32(span)), g.op("Tanh", action)))
        g.op("Min", g.op("Max", target, g.const("ctrl_lo", lo)), g.const("ctrl_hi", hi), out="ctrl")
    outputs += [tensor("action", policy.action_size), tensor("ctrl", policy.action_size)]
    if kind != "mlp":
        outputs.append(tensor("next_decoder_state", size))
    for v in inputs + outputs:
        v.doc_string = DOCS[v.name]

    from mimic_mjx.version import __version__

    names = list(actuator_names) if actuator_names is not None else [f"actuator_{i}" for i in range(len(lo))]
    meta = {
        "body": policy.config.env.body,
        "part": "decoder" if decoder_only else "controller",
        "ref_obs_size": str(policy.ref_obs_size),
        "prop_obs_size": str(policy.prop_obs_size),
        "action_size": str(policy.action_size),
        "latent_dim": str(latent_dim),
        "decoder": kind,
        "decoder_state_size": str(size),
        "decoder_state_layout": _STATE_LAYOUT[kind].format(h=size // 2 if kind == "lstm" else size),
        "actuator_names": json.dumps(names),
        "ctrlrange": json.dumps(ctrlrange.tolist()),
        "mimic_version": __version__,
        "run_dir": str(Path(policy.run_dir).resolve()) if policy.run_dir is not None else "",
        "checkpoint_update": str(policy.update),
        "control_every_frames": str(policy.config.env.control_every),
        "substeps": str(policy.config.env.substeps),
        "horizon_frames": str(policy.config.env.horizon),
        "observation_normalisation": f"clip((x - mean) / std, -{NORM_CLIP:g}, {NORM_CLIP:g}), inside the graph",
        "action_mode": "absolute" if relative is None else f"relative, +-{relative[0]:g} rad from the joint angle",
        **{k: str(v) for k, v in (metadata or {}).items()},
    }
    what = "decoder (latent intention + proprioception -> action)" if decoder_only else "controller"
    graph = helper.make_graph(
        g.nodes,
        f"mimic_{meta['body']}_{meta['part']}",
        inputs,
        outputs,
        initializer=g.inits,
        doc_string=f"mimic-mjx deterministic {what} for body '{meta['body']}'",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mimic-mjx",
        producer_version=__version__,
        doc_string=MODEL_DOC,
        ir_version=IR_VERSION,
    )
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    _write(model, Path(out))
    return {
        "out": str(out),
        "inputs": {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in inputs},
        "outputs": {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in outputs},
        "metadata": meta,
    }


def _write(model, out: Path) -> None:
    from mimic_mjx.files import atomic_path

    if out.is_dir():
        raise MimicError(f"--out {out} is a folder; pass a file name such as {out / 'policy.onnx'}")
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(model.SerializeToString())
    except OSError as exc:
        raise MimicError(
            f"cannot write {out} ({exc.strerror or exc}); pass an --out path in a writable folder"
        ) from None
