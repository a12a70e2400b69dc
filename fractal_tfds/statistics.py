"""Analytic statistics of an expansion (Proposition 1, Theorem 1) and the same ones measured.

Analytic figures never materialize R~: with F[i, j] = w[i, j] * s[i, j] (w the block weight, R^
for 'product' values and 1 otherwise; s the expected keep fraction of block (i, j)), the expected
R~ is a row/column permutation of F (x) R' for the 'none' and 'coherent' permutations, so

    row sum of synthetic user (i, r)   = (sum_j F[i, j]) * rowsum(R')[r]          (Prop. 1)
    column sum of item (j, c)          = (sum_i F[i, j]) * colsum(R')[c]
    singular values                    = sv(F) x sv(R')  (Minkowski product)   (Thm. 1)

With 'block' permutations the Kronecker identities hold only for the multiset of block sums,
not per synthetic user: `row_sums(exact=True)` then sums block by block (O(m2 n2 m)).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fractal_tfds.reduce import leading_svd


def _base(expansion, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(per-entry quantity q of R', block factor F): kind 'value' or 'count'."""
    if kind not in ("value", "count"):
        raise ValueError(f"unknown kind {kind!r}: 'value' (sums) or 'count' (degrees)")
    keep = expansion.expected_counts / expansion.nnz
    if kind == "count":
        return np.ones(expansion.nnz, np.float64), keep
    return expansion.entry_values.astype(np.float64), expansion.block_weight.astype(np.float64) * keep


def row_sums(expansion, kind: str = "value", exact: bool = True) -> np.ndarray:
    """(num_users,) float64 expected row sums ('value') or degrees ('count') per synthetic user.

    For 'block' permutations with exact=False, returns the Kronecker prediction as a multiset
    (ids not meaningful), which is what Proposition 1 would claim.
    """
    q, f = _base(expansion, kind)
    m, m2, n2 = expansion.m, expansion.m2, expansion.n2
    base = np.bincount(expansion.entry_rows, weights=q, minlength=m)
    out = np.zeros(m2 * m, np.float64)
    rows = np.arange(m, dtype=np.int32)
    if expansion.permutation == "block" and exact:
        for i in range(m2):
            acc = out[i * m:(i + 1) * m]
            for j in range(n2):
                acc[expansion.row_map(i, j, rows)] += f[i, j] * base
        return out
    a = f.sum(axis=1)  # (m2,)
    for i in range(m2):
        out[i * m + expansion.row_map(i, 0, rows)] = a[i] * base
    return out


def column_sums(expansion, kind: str = "value", exact: bool = True) -> np.ndarray:
    """(num_items,) float64 expected column sums or degrees per synthetic item (see row_sums)."""
    q, f = _base(expansion, kind)
    n, m2, n2 = expansion.n, expansion.m2, expansion.n2
    base = np.bincount(expansion.entry_cols, weights=q, minlength=n)
    out = np.zeros(n2 * n, np.float64)
    cols = np.arange(n, dtype=np.int32)
    if expansion.permutation == "block" and exact:
        for j in range(n2):
            acc = out[j * n:(j + 1) * n]
            for i in range(m2):
                acc[expansion.col_map(i, j, cols)] += f[i, j] * base
        return out
    a = f.sum(axis=0)  # (n2,)
    for j in range(n2):
        out[j * n + expansion.col_map(0, j, cols)] = a[j] * base
    return out


def source_singular_values(expansion, top: int) -> np.ndarray:
    """Leading `top` singular values of R' (the per-entry values the expansion multiplies)."""
    cache = expansion.__dict__.setdefault("_source_spectrum", {})
    known = cache.get("values")
    if known is not None and (len(known) >= top or cache.get("complete")):
        return known[:top].copy()
    red = expansion.reduced
    if expansion.values == "product" and top <= len(red.singular_values):
        return red.singular_values[:top].copy()
    r = expansion.ratings.matrix
    mat = sp.csr_matrix((expansion.entry_values.astype(np.float64), r.indices, r.indptr),
                        shape=r.shape)
    k = min(top, min(mat.shape) - 1) if min(mat.shape) > 1 else 1
    cache["values"] = leading_svd(mat, k, expansion.seed)[1]
    cache["complete"] = k < top
    return cache["values"][:top].copy()


def singular_values(expansion, top: int = 64) -> np.ndarray:
    """(top,) leading singular values of (expected) R~ by Theorem 1, descending.

    Exact for 'none'/'coherent' without sampling; with sampling, those of the expected matrix;
    with 'block' permutations, the Kronecker prediction only.
    """
    _, f = _base(expansion, "value")
    s_small = np.linalg.svd(f, compute_uv=False)
    s_big = source_singular_values(expansion, top)
    prod = np.outer(s_small, s_big).ravel()
    return np.sort(prod)[::-1][:top]


def std_over_mean(x: np.ndarray) -> float:
    """Degree spread: std / mean over the non-zero entries (active users or items)."""
    x = np.asarray(x, np.float64)
    x = x[x > 0]
    return float(x.std() / x.mean()) if len(x) else 0.0


def _spread(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"min": float(x.min()), "median": float(np.median(x)), "mean": float(x.mean()),
            "max": float(x.max()), "std_over_mean": float(x.std() / x.mean()) if x.mean() else 0.0}


def summary(expansion, top_singular: int = 16) -> dict:
    """JSON-friendly analytic statistics of an expansion (see `measure` for the measured ones)."""
    r = expansion.ratings.matrix
    real_user_deg = np.diff(r.indptr)
    real_item_deg = np.bincount(r.indices, minlength=r.shape[1])
    user_deg = row_sums(expansion, "count")
    item_deg = column_sums(expansion, "count")
    user_deg_active = user_deg[user_deg > 0]
    item_deg_active = item_deg[item_deg > 0]
    ud, idg = _spread(user_deg_active), _spread(item_deg_active)
    rd, rid = _spread(real_user_deg), _spread(real_item_deg)
    return {
        "num_users": expansion.num_users,
        "num_items": expansion.num_items,
        "num_interactions": expansion.num_interactions,
        "expected_num_interactions": expansion.expected_num_interactions,
        "density": expansion.num_interactions / (expansion.num_users * expansion.num_items),
        "source_density": expansion.nnz / (expansion.m * expansion.n),
        "options": expansion.options(),
        "kronecker_exact": expansion.is_kronecker,
        "user_degree": ud,
        "item_degree": idg,
        "source_user_degree": rd,
        "source_item_degree": rid,
        "user_degree_spread_ratio": ud["std_over_mean"] / rd["std_over_mean"],
        "item_degree_spread_ratio": idg["std_over_mean"] / rid["std_over_mean"],
        "singular_values": singular_values(expansion, top_singular).tolist(),
        "source_singular_values": source_singular_values(expansion, top_singular).tolist(),
    }


def measure(arrays, num_users: int, num_items: int, singular: int = 0) -> dict:
    """Row/column sums and degrees measured on materialized interactions.

    Args:
      arrays: iterable of (users, items, values) arrays, e.g. `read_expansion(dir)`.
      num_users, num_items: id space sizes.
      singular: if > 0, also the leading `singular` singular values (builds a sparse matrix of
        the whole expansion: small expansions only).

    Returns:
      dict of (num_users,) / (num_items,) float64 arrays `row_sums`, `row_counts`,
      `column_sums`, `column_counts`, int `num_interactions`, and optionally `singular_values`.
    """
    rs = np.zeros(num_users)
    rc = np.zeros(num_users)
    cs = np.zeros(num_items)
    cc = np.zeros(num_items)
    total = 0
    parts = []
    for users, items, values in arrays:
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        values = np.asarray(values, np.float64)
        rs += np.bincount(users, values, num_users)
        rc += np.bincount(users, minlength=num_users)
        cs += np.bincount(items, values, num_items)
        cc += np.bincount(items, minlength=num_items)
        total += len(users)
        if singular:
            parts.append((users, items, values))
    out = {"row_sums": rs, "row_counts": rc, "column_sums": cs, "column_counts": cc,
           "num_interactions": total}
    if singular:
        if total > 50_000_000:
            raise ValueError(f"measuring the spectrum of {total} interactions needs a sparse matrix "
                             "of that size; use a smaller expansion")
        u, i, v = (np.concatenate(c) for c in zip(*parts))
        mat = sp.csr_matrix((v, (u, i)), shape=(num_users, num_items))
        out["singular_values"] = leading_svd(mat, singular)[1]
    return out
