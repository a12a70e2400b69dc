"""Reduction (Algorithm 2) and analytic statistics at ML-20M scale, on a synthetic stand-in.

The stand-in has ML-20M's shape (138,493 users x 26,744 items) and about 20M non-zeros with
heavy-tailed user degrees (Pareto) and item popularity (Zipf), ratings 0.5..5 centred and
rescaled as the paper does. Each measurement runs in a fresh process (its own peak RSS):
  * baseline, same run: scipy.sparse.linalg.svds alone at k = 128 (what Algorithm 2 must call);
  * ours: reduce_ratings at 16x32 and 128x256 (SVD + resize + orthogonalization + R^);
  * ours: analytic statistics at 128x256 (17.7M users x 6.8M items): row/column sums, degrees,
    spectrum and summary, for the `paper` and `coherent` presets, never materializing R~.

Usage: python benchmarks/reduce_scale.py [--nnz 20000000]
Targets: the whole reduction at 128x256 under 60 s and 2 GB; analytic statistics in seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from _common import run_child

MAKE = """
import numpy as np
from fractal_tfds.ratings import Ratings
def stand_in(m=138_493, n=26_744, nnz={nnz}, seed=0):
    rng = np.random.default_rng(seed)
    deg = np.minimum((rng.pareto(1.1, m) + 1) * 20, n // 2)
    deg = np.maximum((deg * (nnz * 1.45 / deg.sum())).astype(np.int64), 1)
    users = np.repeat(np.arange(m, dtype=np.int64), deg)
    pop = 1.0 / np.arange(1, n + 1) ** 0.9
    cdf = np.cumsum(pop) / pop.sum()
    items = np.searchsorted(cdf, rng.random(len(users))).astype(np.int64)
    items = rng.permutation(n)[items]
    key = np.unique(users * n + items)
    users, items = key // n, key % n
    r = rng.integers(1, 11, len(users)) / 2.0
    v = (r - r.mean()) / np.abs(r - r.mean()).max()
    return Ratings.from_arrays(users, items, v, shape=(m, n))
R = stand_in()
"""

LOAD = """
import numpy as np, scipy.sparse as sp
from fractal_tfds.ratings import Ratings
with np.load({path!r}) as z:
    mat = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
R = Ratings(matrix=mat, raw_values=mat.data.astype(np.float32),
            user_ids=np.arange(mat.shape[0]), item_ids=np.arange(mat.shape[1]))
"""

SAVE = MAKE + """
np.savez({path!r}, data=R.matrix.data, indices=R.matrix.indices, indptr=R.matrix.indptr,
         shape=np.array(R.matrix.shape))
print('{{}}')
"""

SVDS = LOAD + """
import json, time
import scipy.sparse.linalg as sl
t = time.perf_counter()
sl.svds(R.matrix, k=128)
print(json.dumps(dict(seconds=time.perf_counter() - t, nnz=R.nnz)))
"""

REDUCE = LOAD + """
import json, time
from fractal_tfds import reduce_ratings
t = time.perf_counter()
red = reduce_ratings(R, ({m2}, {n2}), seed=0)
print(json.dumps(dict(seconds=time.perf_counter() - t, nnz=R.nnz,
                      svd_seconds=red.diagnostics["svd_seconds"])))
"""

STATS = LOAD + """
import json, time
from fractal_tfds import Expansion, reduce_ratings
red = reduce_ratings(R, (128, 256), seed=0)
out = {{}}
for preset in ("paper", "coherent"):
    t = time.perf_counter()
    x = Expansion(R, red, preset, seed=0)
    t_init = time.perf_counter() - t
    t = time.perf_counter()
    x.singular_values(16)  # R's own leading spectrum (an input property; svds for 'original')
    t_svd = time.perf_counter() - t
    t = time.perf_counter()
    rows, cols = x.row_sums(), x.column_sums()
    degs = x.row_sums("count"), x.column_sums("count")
    sv = x.singular_values(16)
    summary = x.statistics()
    out[preset] = dict(init_s=t_init, source_svd_s=t_svd, stats_s=time.perf_counter() - t, users=x.num_users,
                       items=x.num_items, interactions=x.num_interactions)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nnz", type=int, default=20_000_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "stand_in.npz")
    made = run_child(SAVE.format(nnz=args.nnz, path=path))
    print(f"made the stand-in in a separate process (peak {made['peak_rss_mb']:.0f} MB); "
          "the processes below load it (~12 bytes per non-zero)")
    base = run_child(SVDS.format(path=path))
    print(f"stand-in: 138,493 x 26,744, {base['nnz']:,} non-zeros")
    print(f"baseline scipy svds k=128 alone: {base['seconds']:.1f} s, peak {base['peak_rss_mb']:.0f} MB")
    for m2, n2 in [(16, 32), (128, 256)]:
        r = run_child(REDUCE.format(path=path, m2=m2, n2=n2))
        print(f"reduce_ratings {m2}x{n2}: {r['seconds']:.1f} s (svd {r['svd_seconds']:.1f} s), "
              f"peak {r['peak_rss_mb']:.0f} MB; time ratio to svds k=128: "
              f"{r['seconds'] / base['seconds']:.2f}, "
              f"memory ratio {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
        if (m2, n2) == (128, 256):
            ok = r["seconds"] < 60 and r["peak_rss_mb"] < 2048
            print(f"target 128x256 (< 60 s, < 2 GB): {'met' if ok else 'NOT met'}")
    s = run_child(STATS.format(path=path))
    for preset in ("paper", "coherent"):
        d = s[preset]
        print(f"analytic statistics 128x256 {preset}: {d['users']:,} users x {d['items']:,} items, "
              f"{d['interactions']:,} interactions; tables {d['init_s']:.2f} s, "
              f"R's spectrum {d['source_svd_s']:.2f} s, statistics {d['stats_s']:.2f} s "
              f"(peak {s['peak_rss_mb']:.0f} MB)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
