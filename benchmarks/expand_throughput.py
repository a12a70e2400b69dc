"""Write throughput and peak memory of `Expansion.write` on ml-latest-small.

Measures, each in a fresh process (so peak RSS is its own):
  * ours: ml-latest-small at 16x32 with `movielens-1b` and `paper`, written with 2 workers,
    including a final sync to disk; and the same at 4x4 (peak RSS must not grow with the factors);
  * baseline, same run: a reference-style writer (one process, one global random stream,
    per-block random row/column orders and a choice without replacement, compressed .npz of int64
    [user, item] rows per block-row, as the MovieLens-1B code does);
  * ceiling, same run: NumPy writing the same number of bytes as raw .npy with a sync.

Usage: python benchmarks/expand_throughput.py [--data DIR] [--workers 2]
Targets: >= 20M interactions/s written with 2 workers, peak RSS < 500 MB, no growth with factors.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from _common import data_dir, run_child

OURS = """
import json, os, time, tempfile
from fractal_tfds.sources import load_ratings
from fractal_tfds import Expansion, reduce_ratings
t0 = time.perf_counter()
preset = {preset!r}
r = load_ratings({csv!r}, preprocessing="implicit" if preset == "movielens-1b" else "paper")
red = reduce_ratings(r, ({m2}, {n2}), resize="bilinear" if preset == "movielens-1b" else "area")
x = Expansion(r, red, preset, seed=0)
out = os.path.join({tmp!r}, "ours-" + preset + "-{m2}x{n2}")
t1 = time.perf_counter()
meta = x.write(out, workers={workers}, progress=False)
os.sync()
t2 = time.perf_counter()
size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
print(json.dumps(dict(interactions=x.num_interactions, write_s=t2 - t1, total_s=t2 - t0,
                      bytes=size)))
"""

REFERENCE = """
import json, os, time
import numpy as np
from fractal_tfds.sources import load_ratings
from fractal_tfds import reduce_ratings
r = load_ratings({csv!r}, preprocessing="implicit")
red = reduce_ratings(r, ({m2}, {n2}), resize="bilinear")
mat = r.matrix.tocoo()
rows, cols, nnz = mat.row.astype(np.int64), mat.col.astype(np.int64), mat.nnz
m, n = mat.shape
rng = np.random.default_rng(0)  # one global stream, as the reference
t1 = time.perf_counter()
total = 0
for i in range({m2}):
    parts = []
    for j in range({n2}):
        p = red.keep_prob[i, j]
        k = nnz if p >= 1.0 else min(max(int(nnz * min(max(p, 0.01), 0.95)), 1), nnz)
        row_perm, col_perm = rng.permutation(m), rng.permutation(n)
        keep = rng.choice(nnz, size=k, replace=False)
        parts.append(np.stack([i * m + row_perm[rows[keep]], j * n + col_perm[cols[keep]]], 1))
    block_row = np.concatenate(parts)
    total += len(block_row)
    np.savez_compressed(os.path.join({tmp!r}, "ref-%d.npz" % i), block_row)
os.sync()
t2 = time.perf_counter()
print(json.dumps(dict(interactions=total, write_s=t2 - t1)))
"""

CEILING = """
import json, os, time
import numpy as np
n = {interactions}
ids = np.arange(min(n, 1 << 24), dtype=np.int32)
vals = np.ones(len(ids), np.float32)
t1 = time.perf_counter()
with open(os.path.join({tmp!r}, "ceil.npy"), "wb") as f:
    left = n
    while left > 0:
        k = min(left, len(ids))
        f.write(ids[:k].tobytes()); f.write(ids[:k].tobytes()); f.write(vals[:k].tobytes())
        left -= k
os.sync()
t2 = time.perf_counter()
print(json.dumps(dict(interactions=n, write_s=t2 - t1)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    csv = os.path.join(data_dir(args.data), "ratings.csv")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        for preset, m2, n2 in [("movielens-1b", 16, 32), ("paper", 16, 32),
                               ("movielens-1b", 4, 4), ("paper", 4, 4)]:
            res = run_child(OURS.format(preset=preset, csv=csv, m2=m2, n2=n2, tmp=tmp,
                                        workers=args.workers))
            res["rate"] = res["interactions"] / res["write_s"]
            rows.append((f"ours {preset} {m2}x{n2} ({args.workers} workers)", res))
        ref = run_child(REFERENCE.format(csv=csv, m2=16, n2=32, tmp=tmp))
        ref["rate"] = ref["interactions"] / ref["write_s"]
        rows.append(("reference-style movielens-1b 16x32 (1 process, npz)", ref))
        paper = rows[1][1]
        ceil = run_child(CEILING.format(interactions=paper["interactions"], tmp=tmp))
        ceil["rate"] = ceil["interactions"] / ceil["write_s"]
        rows.append(("ceiling: raw NumPy write of the same bytes (1 process)", ceil))

    print(f"{'run':58s} {'interactions':>13s} {'seconds':>8s} {'M int/s':>8s} {'peak MB':>8s}")
    for name, r in rows:
        print(f"{name:58s} {r['interactions']:13,d} {r['write_s']:8.2f} {r['rate'] / 1e6:8.1f} "
              f"{r['peak_rss_mb']:8.0f}")
    ml1b, paper, ml1b4, paper4 = (r for _, r in rows[:4])
    print(f"ratio ours/reference-style (movielens-1b 16x32): {ml1b['rate'] / ref['rate']:.1f}x")
    print(f"ratio ours/2024 re-implementation (0.93M/s, NOTES): {ml1b['rate'] / 0.93e6:.1f}x "
          f"(movielens-1b), {paper['rate'] / 0.93e6:.1f}x (paper)")
    print(f"ratio ours paper / raw-write ceiling: {paper['rate'] / ceil['rate']:.2f}")
    print(f"peak RSS 16x32 / 4x4: movielens-1b {ml1b['peak_rss_mb'] / ml1b4['peak_rss_mb']:.2f}, "
          f"paper {paper['peak_rss_mb'] / paper4['peak_rss_mb']:.2f}")
    ok = (min(ml1b["rate"], paper["rate"]) >= 20e6 and
          max(ml1b["peak_rss_mb"], paper["peak_rss_mb"]) < 500)
    print(f"targets (>= 20M/s, < 500 MB, flat RSS): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
