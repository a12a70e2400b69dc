"""Build and read rates of the fractal_movielens TFDS builder, next to the trivial TFDS baseline.

    python benchmarks/tfds_build.py --data /work/shared/data/movielens-latest-small \
        [--configs latest-small-4x4-movielens-1b,latest-small-4x4-movielens-1b-user-histories] \
        [--formats tfrecord,array_record] [--baseline-interactions 300000]

Build: `download_and_prepare` wall time (offline, manual_dir), including load + reduce + split,
in interactions/s. Read (tfrecord): interactions layout through `batched_dataset` (batches of
65,536 serialized records parsed with one `tf.io.parse_example`), user_histories through
`as_dataset` (one example per user), both consumed by a graph-mode (`tf.function`) loop after a
warm pass. Read (array_record): `tfds.data_source` random access, 65,536 random indices per
`__getitems__` call. The baseline (`/work/shared/baselines/tfds_trivial_builder.py`) runs in
the same process tree right before, and ratios are printed against it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                        "baselines", "tfds_trivial_builder.py")


def run_baseline(n: int) -> dict:
    out = subprocess.run([sys.executable, BASELINE, "--interactions", str(n)], capture_output=True,
                         text=True, check=True).stdout
    rates = {}
    for line in out.splitlines():
        m = re.match(r"(\w+)\s+build\s+([\d.]+)M.*read\s+([\d.]+)M", line)
        if m:
            rates[m.group(1)] = (float(m.group(2)) * 1e6, float(m.group(3)) * 1e6)
    print(out.strip())
    return rates


def consume(ds, key):
    import tensorflow as tf

    @tf.function
    def loop(ds):
        n = tf.constant(0, tf.int64)
        for x in ds:
            n += tf.cast(tf.size(x[key]), tf.int64)
        return n

    loop(ds)  # warm pass: tracing, file cache
    t = time.perf_counter()
    n = int(loop(ds))
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get(
        "FRACTAL_TFDS_TEST_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                               "shared", "data", "movielens-latest-small")))
    ap.add_argument("--configs", default="latest-small-4x4-movielens-1b,"
                    "latest-small-4x4-movielens-1b-user-histories,"
                    "latest-small-16x32-movielens-1b,latest-small-16x32-movielens-1b-user-histories")
    ap.add_argument("--formats", default="tfrecord,array_record")
    ap.add_argument("--baseline-interactions", type=int, default=300_000)
    ap.add_argument("--keep", help="build into this folder instead of a temporary one")
    args = ap.parse_args()

    print("== baseline (trivial TFDS builder) ==")
    base = run_baseline(args.baseline_interactions)

    import numpy as np
    import tensorflow_datasets as tfds

    import fractal_tfds  # noqa: F401
    from fractal_tfds.builder.fractal_movielens import fractal_movielens_dataset_builder as fm

    rows = []
    root = args.keep or tempfile.mkdtemp(prefix="fractal_tfds_bench_")
    for fmt in args.formats.split(","):
        for name in args.configs.split(","):
            b = tfds.builder(f"fractal_movielens/{name}", data_dir=os.path.join(root, fmt),
                             file_format=fmt)
            t = time.perf_counter()
            b.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=args.data))
            build_s = time.perf_counter() - t
            n_inter = int(b.info.metadata["num_interactions"])
            hist = b.builder_config.layout == "user_histories"
            if fmt == "tfrecord":
                if hist:
                    ds = b.as_dataset(split="train").prefetch(16)
                    n, read_s = consume(ds, "item_ids")
                else:
                    ds = fm.batched_dataset(b, "train", batch_size=65536,
                                            features=["user_id", "item_id", "rating"]).prefetch(4)
                    n, read_s = consume(ds, "user_id")
            else:
                # Random access: ArrayRecord fetches serialized records, one parse per batch
                # (tfds.data_source decodes every example in Python: ~0.02M/s).
                total = b.info.splits["train"].num_examples
                rng = np.random.default_rng(0)
                batch = 65536 if not hist else 64
                key = "item_ids" if hist else "user_id"
                n, t = 0, time.perf_counter()
                while time.perf_counter() - t < 3.0:
                    out = fm.random_access_batch(b, "train", rng.integers(0, total, batch),
                                                 features=[key])
                    n += int(out[key].flat_values.shape[0]) if hist else batch
                read_s = time.perf_counter() - t
            rows.append((name, fmt, n_inter, build_s, n_inter / build_s, n / read_s, hist))
            print(f"{name:48s} {fmt:12s} {n_inter:>11,d} interactions  build {build_s:7.1f} s "
                  f"{n_inter / build_s / 1e6:7.3f}M/s   read {n / read_s / 1e6:7.3f}M/s", flush=True)

    print("\n== ratios against the trivial TFDS builder (same run) ==")
    for name, fmt, _n, _s, build_r, read_r, hist in rows:
        b_build, b_read = base["Hist" if hist else "Flat"]
        print(f"{name:48s} {fmt:12s} build x{build_r / b_build:7.1f}   read x{read_r / b_read:7.1f}"
              f"   ({'per-user' if hist else 'per-interaction'} baseline "
              f"{b_build / 1e6:.3f}M/s build, {b_read / 1e6:.3f}M/s read)")


if __name__ == "__main__":
    main()
