"""Several processes, one run folder: process 0 alone writes, and every decision is the same in all of them.

In a multi-process run (``parallel.init_distributed``) every process runs the
same training loop on its share of the environments, and all of them see the
run folder on a shared file system. Were each to write it, metrics lines would
be duplicated, config and provenance files raced and every checkpoint written
twice; were each to decide on its own (which checkpoint verifies, whether a
signal came, whether time is up), they would leave the loop at different
updates and then wait forever in the next collective. So process 0 does every
write and every decision that reads the folder and shares the outcome (an
error included), and the flags any process may raise are combined over all of
them, once per update.

With one process every function here is a plain call: no collective runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import jax
import numpy as np

from mimic_mjx.errors import MimicError


class WriterError(MimicError):
    """Process 0 failed at a step only it runs; the other processes stop with its message."""


def several() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes the run folder (process 0)."""
    return jax.process_index() == 0


def agree(flags: Sequence[int]) -> list[int]:
    """Each flag's largest value over all processes: the same list in every process.

    Every process must call it at the same point of the program (it is a collective).
    """
    flags = [int(f) for f in flags]
    if not several():
        return flags
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(np.asarray(flags, np.int32)))
    return [int(v) for v in gathered.reshape(jax.process_count(), len(flags)).max(axis=0)]


def _broadcast(buf: np.ndarray | None, size: int | None = None) -> np.ndarray:
    """Process 0's uint8 buffer in every process (``buf`` is ignored elsewhere).

    Bytes, not values: a sum with zeros (how JAX broadcasts) would turn -0.0 into
    0.0, and a restored state must equal what was saved bit for bit.
    """
    from jax.experimental import multihost_utils

    if size is None:
        size = int(multihost_utils.broadcast_one_to_all(np.int32(buf.size if is_writer() else 0)))
    if size == 0:
        return np.zeros(0, np.uint8)
    mine = buf if is_writer() else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(mine))


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text if isinstance(exc, MimicError) else f"{type(exc).__name__}: {text}"


def writer_only(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by process 0 alone; an error it raises is raised in every process.

    Returns ``fn``'s result in process 0 and None in the others, once process 0
    has finished (so it also orders reads after process 0's writes).
    """
    if not several():
        return fn(*args, **kwargs)
    result = error = None
    if is_writer():
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # shared first, then raised: the others must not wait for it forever
            error = exc
    (failed,) = agree([error is not None])
    if not failed:
        return result
    text = _one_line(error).encode() if error is not None else b""
    message = _broadcast(np.frombuffer(text, np.uint8)).tobytes().decode(errors="replace")
    if error is not None:
        raise error
    raise WriterError(f"process 0 stopped the run: {message}")


def from_writer(fn: Callable, *args, **kwargs):
    """``writer_only``, with process 0's result (JSON: a mode, a step) returned in every process."""
    result = writer_only(fn, *args, **kwargs)
    if not several():
        return result
    text = json.dumps(result).encode() if is_writer() else b""
    return json.loads(_broadcast(np.frombuffer(text, np.uint8)).tobytes())


def tree_from_writer(fn: Callable, like, *args, **kwargs):
    """``writer_only``, with process 0's result (a tree of arrays shaped as ``like``) in every process.

    ``like``: the same structure, with arrays or ShapeDtypeStructs; the result's
    leaves are host arrays of those shapes and dtypes, bit-identical to process 0's.
    """
    result = writer_only(fn, *args, **kwargs)
    if not several():
        return result
    specs, treedef = jax.tree.flatten(like)
    if is_writer():
        leaves = treedef.flatten_up_to(result)
        parts = [
            np.ascontiguousarray(np.asarray(x, s.dtype)).reshape(-1).view(np.uint8)
            for x, s in zip(leaves, specs, strict=True)
        ]
        buf = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    else:
        buf = None
    sizes = [int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in specs]
    data = _broadcast(buf, sum(sizes))
    out, at = [], 0
    for s, n in zip(specs, sizes, strict=True):
        out.append(data[at : at + n].view(s.dtype).reshape(s.shape).copy())
        at += n
    return jax.tree.unflatten(treedef, out)
