"""Population analyses of recorded activity: PCA of latents/layers, NMF muscle synergies.

Pure functions over NumPy arrays (rows = samples, columns = units or muscles);
reading rollout files and plotting live in ``analysis/analyze.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import NMF, PCA
from sklearn.exceptions import ConvergenceWarning

from mimic_mjx.errors import MimicError

VAF_THRESHOLD = 0.9


class AnalysisError(MimicError):
    """Data cannot be analysed (too few samples, wrong sign, nothing finite)."""


def _finite_rows(X, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``X`` without NaN/inf and the mask of those rows.

    Rollouts hold NaN after tracking is lost, so callers may pass them whole.
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)  # float32 stays: large datasets are stored so to halve memory
    if X.ndim != 2 or X.shape[1] == 0:
        raise AnalysisError(f"{what}: expected a 2-D array (samples x dimensions), got shape {X.shape}")
    keep = np.all(np.isfinite(X), axis=1)
    if not keep.any():
        raise AnalysisError(f"{what}: no finite samples ({X.shape[0]} rows, all with NaN or inf)")
    if keep.sum() < 2:
        raise AnalysisError(f"{what}: needs at least 2 finite samples, got {int(keep.sum())}")
    return X[keep], keep


def _components_for(cumulative: np.ndarray, fraction: float) -> int:
    # Rounding can leave the full cumulative sum a hair under 1.
    return int(min(np.searchsorted(cumulative, fraction - 1e-12) + 1, len(cumulative)))


def pca_summary(X, max_components: int | None = None, what: str = "data") -> dict:
    """PCA of ``X`` (samples x dimensions); rows with NaN are left out.

    The components needed for 90 % / 95 % of the variance come from the full
    spectrum; the per-component lists and the projection stop at
    ``max_components`` (all components when None).

    Returns ``explained_variance_ratio`` and ``cumulative`` (arrays),
    ``components_90``, ``components_95``, ``n_samples`` (finite rows used),
    ``dims``, ``projection`` (len(X) x k, NaN on the rows left out, so it
    lines up with ``X``), ``mean`` and ``components`` (k x dims) and the
    fitted sklearn ``pca``.
    """
    Xf, keep = _finite_rows(X, what)
    if max_components is not None and max_components < 1:
        raise AnalysisError(f"max_components must be at least 1, got {max_components}")
    total = Xf.var(axis=0, dtype=np.float64).sum()
    if not total > 0:
        raise AnalysisError(f"{what}: has no variance (all {len(Xf)} samples are the same)")
    pca = PCA(n_components=None, random_state=0).fit(Xf)
    ratio = pca.explained_variance_ratio_
    cumulative = np.cumsum(ratio)
    k = len(ratio) if max_components is None else min(max_components, len(ratio))
    projection = np.full((len(keep), k), np.nan)
    projection[keep] = pca.transform(Xf)[:, :k]
    return {
        "n_samples": int(len(Xf)),
        "dims": int(Xf.shape[1]),
        "explained_variance_ratio": ratio[:k],
        "cumulative": cumulative[:k],
        "components_90": _components_for(cumulative, 0.90),
        "components_95": _components_for(cumulative, 0.95),
        "projection": projection,
        "mean": pca.mean_,
        "components": pca.components_[:k],
        "pca": pca,
    }


def vaf(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """Variance accounted for, uncentred as in the muscle-synergy literature: 1 - |A - WH|^2 / |A|^2."""
    return float(1.0 - np.sum((A - W @ H) ** 2, dtype=np.float64) / np.sum(A**2, dtype=np.float64))


def nmf_synergies(
    A, max_synergies: int, threshold: float = VAF_THRESHOLD, what: str = "activations", max_iter: int = 1000
) -> dict:
    """Muscle synergies of ``A`` (samples x muscles, non-negative) by NMF for k = 1..max_synergies.

    ``A ~ W @ H``: ``H[i]`` is synergy i's muscle weights, scaled to unit
    norm (``W`` carries the amplitude). Rows with NaN are left out.

    Returns ``vaf`` (one per k), ``synergies_needed`` (smallest k with VAF >=
    ``threshold``; None when ``max_synergies`` is not enough), ``k`` (that
    number, else ``max_synergies``), ``H`` and ``W`` (lists indexed k-1, ``W``
    len(A) x k with NaN on the rows left out), ``n_samples``, ``muscles``.
    """
    Af, keep = _finite_rows(A, what)
    if Af.min() < 0:
        raise AnalysisError(
            f"{what}: NMF needs non-negative data, the minimum is {Af.min():.3g}; clip activations to [0, inf) first"
        )
    if not np.any(Af > 0):
        raise AnalysisError(f"{what}: all zero; there is nothing to factorise")
    n, m = Af.shape
    if not 1 <= max_synergies <= min(n, m):
        raise AnalysisError(
            f"{what}: max_synergies must be between 1 and min(samples, muscles) = {min(n, m)}, got {max_synergies}"
        )
    vafs, Ws, Hs = [], [], []
    for k in range(1, max_synergies + 1):
        # nndsvda: deterministic SVD-based start (zeros filled with the mean), good for dense data.
        model = NMF(n_components=k, init="nndsvda", solver="cd", max_iter=max_iter, tol=1e-4, random_state=0)
        with warnings.catch_warnings():
            # A fit that stops at max_iter is still a valid factorisation; VAF reports its quality.
            warnings.simplefilter("ignore", ConvergenceWarning)
            W = model.fit_transform(Af)
        H = model.components_
        vafs.append(vaf(Af, W, H))
        scale = np.linalg.norm(H, axis=1)
        scale[scale == 0] = 1.0
        W_full = np.full((len(keep), k), np.nan)
        W_full[keep] = W * scale
        Ws.append(W_full)
        Hs.append(H / scale[:, None])
    reached = [k for k, v in enumerate(vafs, 1) if v >= threshold]
    needed = reached[0] if reached else None
    return {
        "n_samples": int(n),
        "muscles": int(m),
        "vaf": np.array(vafs),
        "threshold": threshold,
        "synergies_needed": needed,
        "k": needed or max_synergies,
        "W": Ws,
        "H": Hs,
    }
