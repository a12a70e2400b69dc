"""Shared helpers for the benchmark scripts: the real data path and peak memory of a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "movielens-latest-small")


def data_dir(path: str | None = None) -> str:
    """The ml-latest-small folder: --data, $FRACTAL_TFDS_TEST_DATA, or ../shared/data/..."""
    path = path or os.environ.get("FRACTAL_TFDS_TEST_DATA") or DEFAULT_DATA
    if not os.path.exists(os.path.join(path, "ratings.csv")):
        sys.exit(f"error: no ratings.csv in {path}; pass --data or set FRACTAL_TFDS_TEST_DATA")
    return os.path.abspath(path)


def run_child(code: str) -> dict:
    """Runs `code` in a fresh Python (it must print one JSON line last); adds peak RSS in MB.

    Peak RSS is the child's own ru_maxrss, read inside it (children of the child included).
    """
    wrapper = code + (
        "\nimport resource as _r, json as _j\n"
        "_self = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss\n"
        "_kids = _r.getrusage(_r.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(_j.dumps({'peak_rss_mb': max(_self, _kids) / 1024}))\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    result = {}
    for d in lines:
        result.update(d)
    return result
