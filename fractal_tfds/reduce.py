"""Algorithm 2 of the paper: reduce R (m x n) to a small R^ (m2 x n2) with R's leading spectrum."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
import skimage.transform

from fractal_tfds.ratings import Ratings

# Explicit resize choices (never library defaults, which changed across skimage versions and
# silently changed R^ in the MovieLens-1B reference):
#  - "area": the paper's "averaging-based down-scaling": every output cell is the exact
#    area-weighted mean of the input cells it covers (skimage.transform.resize_local_mean,
#    grid_mode=True). The axis of size k is left unchanged.
#  - "bilinear": what the MovieLens-1B reference got from skimage < 0.15: skimage.transform.resize
#    with bilinear interpolation, no anti-aliasing, constant (zero) padding.
RESIZE_METHODS: dict[str, dict] = {
    "area": dict(function="resize_local_mean", grid_mode=True, preserve_range=True),
    "bilinear": dict(function="resize", order=1, mode="constant", anti_aliasing=False,
                     anti_aliasing_sigma=None, preserve_range=True, clip=False, cval=0.0),
}


def _resize(a: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """Resizes a 2-D float array to `shape` with one of RESIZE_METHODS (explicit options)."""
    opts = dict(RESIZE_METHODS[method])
    function = getattr(skimage.transform, opts.pop("function"))
    return function(a, shape, **opts)


@dataclasses.dataclass(frozen=True, eq=False)
class Reduced:
    """A reduced matrix R^ and how it was made.

    Attributes:
      matrix: (m2, n2) float64, R^ with the paper's normalisation: U~ diag(s) V~ / (max - min).
      keep_prob: (m2, n2) float64 in [0, 1], the MovieLens-1B normalisation |R^| / max|R^|,
        used as keep probabilities by the sampling options.
      singular_values: (k,) float64, the k = min(m2, n2) leading singular values of R, descending.
      scale: max - min of U~ diag(s) V~, so `matrix` has singular values `singular_values / scale`.
      u_tilde: (m2, k) column-orthonormal; v_tilde: (k, n2) row-orthonormal.
      diagnostics: timings (s), resize method, orthogonality errors, seed.
    """

    matrix: np.ndarray
    keep_prob: np.ndarray
    singular_values: np.ndarray
    scale: float
    u_tilde: np.ndarray
    v_tilde: np.ndarray
    diagnostics: dict

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    def to_dict(self) -> dict:
        """JSON-friendly description (R^ and keep_prob as nested lists)."""
        return {
            "shape": list(self.shape),
            "matrix": self.matrix.tolist(),
            "keep_prob": self.keep_prob.tolist(),
            "singular_values": self.singular_values.tolist(),
            "scale": self.scale,
            "diagnostics": self.diagnostics,
        }

    def save(self, path: str) -> None:
        """Saves to a `.npz` file (everything needed to rebuild the object)."""
        np.savez(path, matrix=self.matrix, keep_prob=self.keep_prob,
                 singular_values=self.singular_values, scale=self.scale,
                 u_tilde=self.u_tilde, v_tilde=self.v_tilde,
                 diagnostics=np.array(repr(self.diagnostics)))

    @classmethod
    def load(cls, path: str) -> Reduced:
        import ast

        with np.load(path) as z:
            return cls(matrix=z["matrix"], keep_prob=z["keep_prob"],
                       singular_values=z["singular_values"], scale=float(z["scale"]),
                       u_tilde=z["u_tilde"], v_tilde=z["v_tilde"],
                       diagnostics=ast.literal_eval(str(z["diagnostics"])))


def parse_factors(text: str) -> tuple[int, int]:
    """Parses '16x32' into (16, 32); raises ValueError with the offending text otherwise."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"bad factors {text!r}: expected ROWSxCOLS with positive integers, e.g. 16x32")
    m2, n2 = int(parts[0]), int(parts[1])
    if m2 < 1 or n2 < 1:
        raise ValueError(f"bad factors {text!r}: both factors must be at least 1")
    return m2, n2


def nearest_orthonormal(a: np.ndarray) -> np.ndarray:
    """Closest matrix with orthonormal columns (rows if wide) in Frobenius norm: the polar factor.

    Equals A (A^T A)^(-1/2) (paper Eq. 5) but computed through an SVD, which stays accurate when
    A is ill-conditioned.
    """
    p, _, qt = np.linalg.svd(a, full_matrices=False)
    return p @ qt


def leading_svd(matrix: sp.spmatrix, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k singular triplets of a sparse matrix, descending and correctly paired.

    Args:
      matrix: (m, n) sparse.
      k: number of triplets, 1 <= k < min(m, n) for ARPACK; k >= min(m, n) uses a dense SVD.
      seed: start vector seed (results are deterministic for a seed).

    Returns:
      u (m, k), s (k,), vt (k, n) with s descending.
    """
    m, n = matrix.shape
    if k >= min(m, n) or min(m, n) <= 64:
        u, s, vt = scipy.linalg.svd(matrix.toarray(), full_matrices=False)
        return u[:, :k], s[:k], vt[:k]
    v0 = np.random.Generator(np.random.Philox(key=[seed, 0x5EED])).uniform(-1, 1, min(m, n))
    u, s, vt = scipy.sparse.linalg.svds(matrix.astype(np.float64), k=k, v0=v0, which="LM",
                                        solver="arpack", maxiter=None)
    order = np.argsort(s)[::-1]  # svds returns ascending: reorder values AND vectors together
    return u[:, order], s[order], vt[order]


def reduce_ratings(
    ratings: Ratings | sp.spmatrix,
    shape: tuple[int, int] | str,
    seed: int = 0,
    resize: str = "area",
) -> Reduced:
    """Algorithm 2: R^ = U~ diag(s) V~ with R's k = min(m2, n2) leading singular values.

    Args:
      ratings: R as `Ratings` (its preprocessed `matrix` is used) or a sparse (m, n) matrix.
      shape: (m2, n2) or 'm2xn2', with m2 <= m and n2 <= n.
      seed: seeds the SVD start vector.
      resize: 'area' (anti-aliased averaging, default) or 'bilinear' (the MovieLens-1B reference).

    Returns:
      A `Reduced` with R^ in both normalisations.

    Example:
      >>> r = Ratings.from_arrays([0, 1, 2, 3], [0, 1, 2, 0], [1.0, 2.0, 3.0, 4.0])
      >>> reduce_ratings(r, (2, 2)).matrix.shape
      (2, 2)
    """
    if isinstance(shape, str):
        shape = parse_factors(shape)
    m2, n2 = (int(x) for x in shape)
    matrix = ratings.matrix if isinstance(ratings, Ratings) else sp.csr_matrix(ratings)
    m, n = matrix.shape
    if m2 < 1 or n2 < 1:
        raise ValueError(f"bad factors {m2}x{n2}: both must be at least 1")
    if m2 > m or n2 > n:
        raise ValueError(f"factors {m2}x{n2} are larger than R ({m} users x {n} items)")
    if resize not in RESIZE_METHODS:
        raise ValueError(f"unknown resize {resize!r}; choose one of {sorted(RESIZE_METHODS)}")
    k = min(m2, n2)
    t0 = time.perf_counter()
    u, s, vt = leading_svd(matrix, k, seed)
    t1 = time.perf_counter()
    u_bar = _resize(u, (m2, k), resize)
    v_bar = _resize(vt, (k, n2), resize)
    u_tilde = nearest_orthonormal(u_bar)
    v_tilde = nearest_orthonormal(v_bar.T).T
    r_temp = (u_tilde * s) @ v_tilde
    scale = float(r_temp.max() - r_temp.min())
    if not scale > 0:
        raise ValueError("reduced matrix is constant: R has no usable spectrum at these factors")
    absmax = float(np.abs(r_temp).max())
    t2 = time.perf_counter()
    diagnostics = {
        "seed": int(seed),
        "resize": resize,
        "resize_options": dict(RESIZE_METHODS[resize]),
        "svd_seconds": t1 - t0,
        "reduce_seconds": t2 - t1,
        "u_orthogonality_error": float(np.abs(u_tilde.T @ u_tilde - np.eye(k)).max()),
        "v_orthogonality_error": float(np.abs(v_tilde @ v_tilde.T - np.eye(k)).max()),
        "source_shape": [int(m), int(n)],
        "source_nnz": int(matrix.nnz),
    }
    return Reduced(
        matrix=r_temp / scale,
        keep_prob=np.abs(r_temp) / absmax,
        singular_values=s,
        scale=scale,
        u_tilde=u_tilde,
        v_tilde=v_tilde,
        diagnostics=diagnostics,
    )
