"""`fractal-tfds` command line: reduce, expand, stats.

    fractal-tfds expand --source ml-latest-small --data-dir DIR --factors 16x32 \
        --preset coherent --seed 0 --out runs/ml-small-16x32 --workers 2 --report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np


class UsageError(ValueError):
    """A bad flag value or input: reported in one line, exit status 2."""


def _factors(text: str) -> tuple[int, int]:
    from fractal_tfds.reduce import parse_factors

    try:
        return parse_factors(text)
    except ValueError as e:
        raise UsageError(f"--factors: {e}") from None


def _add_source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True,
                   help="MovieLens name (ml-latest-small, ml-100k, ml-1m, ml-10m, ml-20m, ml-25m) "
                        "or a path to a ratings file (csv/tsv/'::', optionally .gz)")
    p.add_argument("--data-dir", default=None,
                   help="offline: folder with the official zip or its extracted files "
                        "(default: $FRACTAL_TFDS_DATA_DIR)")
    p.add_argument("--no-download", action="store_true", help="never download from GroupLens")
    p.add_argument("--implicit", action="store_true",
                   help="binarize ratings (MovieLens-1B recipe); default: the paper's centring")
    p.add_argument("--preprocessing", choices=["paper", "raw", "implicit"], default=None,
                   help="value preprocessing of R (default paper, or implicit with --implicit)")
    p.add_argument("--min-distinct-timestamps", type=int, default=0,
                   help="drop users with fewer distinct timestamps (MovieLens-1B uses 3)")
    p.add_argument("--duplicates", choices=["error", "last", "mean", "max"], default="error",
                   help="what to do with repeated (user, item) pairs")
    p.add_argument("--factors", type=str, default="16x32", help="shape of R^, e.g. 16x32")
    p.add_argument("--seed", type=int, default=0, help="the one seed of every random choice")
    p.add_argument("--resize", choices=["area", "bilinear"], default=None,
                   help="U/V resize (default: bilinear for movielens-1b, area otherwise)")


def _add_expansion_flags(p: argparse.ArgumentParser) -> None:
    from fractal_tfds.expansion import PERMUTATIONS, PRESETS, SAMPLINGS, VALUES

    p.add_argument("--preset", choices=sorted(PRESETS), default="coherent",
                   help="named recipe (see README): paper, paper-shuffled, movielens-1b, coherent")
    p.add_argument("--permutation", choices=PERMUTATIONS, default=None)
    p.add_argument("--sampling", choices=SAMPLINGS, default=None)
    p.add_argument("--values", choices=VALUES, default=None)


def _load(args):
    from fractal_tfds.sources import load_ratings

    preprocessing = args.preprocessing or ("implicit" if args.implicit else "paper")
    if args.implicit and preprocessing != "implicit":
        raise UsageError("--implicit contradicts --preprocessing " + preprocessing)
    return load_ratings(args.source, data_dir=args.data_dir, download=not args.no_download,
                        preprocessing=preprocessing,
                        min_distinct_timestamps=args.min_distinct_timestamps,
                        duplicates=args.duplicates)


def _reduce(args, ratings):
    from fractal_tfds.reduce import reduce_ratings

    shape = _factors(args.factors)
    if shape[0] > ratings.num_users or shape[1] > ratings.num_items:
        raise UsageError(f"--factors {args.factors}: larger than R "
                         f"({ratings.num_users} users x {ratings.num_items} items)")
    resize = args.resize or ("bilinear" if getattr(args, "preset", "") == "movielens-1b" else "area")
    return reduce_ratings(ratings, shape, seed=args.seed, resize=resize)


def _expansion(args):
    from fractal_tfds.expansion import Expansion

    ratings = _load(args)
    reduced = _reduce(args, ratings)
    return Expansion(ratings, reduced, args.preset, args.seed, permutation=args.permutation,
                     sampling=args.sampling, values=args.values)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def cmd_reduce(args) -> int:
    ratings = _load(args)
    reduced = _reduce(args, ratings)
    out = reduced.to_dict()
    if args.out:
        if os.path.exists(args.out):
            raise UsageError(f"--out {args.out} already exists")
        tmp = args.out + ".tmp.npz"
        reduced.save(tmp)
        os.replace(tmp, args.out)
    print(json.dumps(out, default=_json_default, indent=1))
    return 0


def cmd_expand(args) -> int:
    if os.path.exists(args.out):
        raise UsageError(f"--out {args.out} already exists; choose a new directory")
    t0 = time.perf_counter()
    x = _expansion(args)
    meta = x.write(args.out, workers=args.workers,
                   max_shard_interactions=args.max_shard_interactions, progress=not args.quiet)
    if args.report:
        from fractal_tfds.report import write_report

        write_report(x, os.path.join(args.out, "report"), measured_dir=args.out)
    dt = time.perf_counter() - t0
    for f in x.ratings.filters:
        print(f"filter {f['name']}: removed {f['rows_removed']:,} ratings, "
              f"{f['users_removed']:,} users, {f['items_removed']:,} items", file=sys.stderr)
    print(f"expanded {x.ratings.source} ({x.nnz:,} ratings) at {x.m2}x{x.n2} preset={x.preset} "
          f"seed={x.seed}: {x.num_users:,} users x {x.num_items:,} items, "
          f"{x.num_interactions:,} interactions in {len(meta['shards'])} shards -> {args.out} "
          f"({meta['interactions_per_second'] / 1e6:.1f}M interactions/s written, {dt:.1f}s total)")
    return 0


def cmd_stats(args) -> int:
    from fractal_tfds.io import read_expansion, read_metadata
    from fractal_tfds.statistics import measure, std_over_mean

    x = _expansion(args)
    stats = x.statistics(top_singular=args.top)
    if args.measure:
        meta = read_metadata(args.measure)
        if meta.get("tables_sha256") != x.fingerprint():
            raise UsageError(f"--measure {args.measure}: written with other options/seed/source "
                             "than these flags")
        ms = measure(read_expansion(args.measure), x.num_users, x.num_items)
        rows, cols = x.row_sums(), x.column_sums()
        stats["measured"] = {
            "num_interactions": ms["num_interactions"],
            "row_sums_max_rel_error": float(np.abs(ms["row_sums"] - rows).max()
                                            / np.abs(rows).max()),
            "column_sums_max_rel_error": float(np.abs(ms["column_sums"] - cols).max()
                                               / np.abs(cols).max()),
            "user_degree_std_over_mean": std_over_mean(ms["row_counts"]),
        }
    print(json.dumps(stats, default=_json_default, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fractal-tfds", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reduce", help="Algorithm 2: print R^ (and save it with --out x.npz)")
    _add_source_flags(p)
    p.add_argument("--out", default=None, help="save R^ as .npz")
    p.set_defaults(func=cmd_reduce)

    p = sub.add_parser("expand", help="write R~ to --out (a new directory)")
    _add_source_flags(p)
    _add_expansion_flags(p)
    p.add_argument("--out", required=True, help="output directory (must not exist)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max-shard-interactions", type=int, default=None)
    p.add_argument("--report", action="store_true",
                   help="also write report/ (statistics JSON and PNG figures)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_expand)

    p = sub.add_parser("stats", help="analytic statistics as JSON (--measure DIR: also measured)")
    _add_source_flags(p)
    _add_expansion_flags(p)
    p.add_argument("--top", type=int, default=16, help="number of singular values")
    p.add_argument("--measure", default=None, help="a written expansion to measure")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(message)s")
    if getattr(args, "workers", 1) is not None and getattr(args, "workers", 1) < 1:
        print("fractal-tfds: error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, OSError) as e:
        print(f"fractal-tfds: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
