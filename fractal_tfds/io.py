"""Writing and reading materialized expansions.

Layout of an output directory (all little-endian):

    metadata.json                 sizes, options, seed, source checksum, R^, shard list
    part-00000.user.npy           (k,) int32 or int64 synthetic user ids
    part-00000.item.npy           (k,) same dtype, synthetic item ids
    part-00000.value.npy          (k,) float32 values
    ...

Raw `.npy` columns are written at disk speed (compressed formats are CPU-bound far below it),
memory-map for free, and load into `tf.data` without parsing. Shards are written into a
temporary sibling directory and renamed into place when all are complete.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import numpy as np

COLUMNS = ("user", "item", "value")


class OutputExistsError(FileExistsError):
    pass


def _npy_header(f, dtype: np.dtype, length: int) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": (int(length),)})


def _write_shard(expansion, spec, directory: str) -> int:
    """Writes one shard block by block (memory: one block); returns interactions written."""
    dtypes = {"user": expansion.id_dtype, "item": expansion.id_dtype, "value": np.float32}
    files = {c: open(os.path.join(directory, f"part-{spec.index:05d}.{c}.npy"), "wb")
             for c in COLUMNS}
    try:
        for c, f in files.items():
            _npy_header(f, dtypes[c], spec.num_interactions)
        written = 0
        for users, items, values in expansion.shard_blocks(spec):
            files["user"].write(users.tobytes())
            files["item"].write(items.tobytes())
            files["value"].write(values.tobytes())
            written += len(users)
        if written != spec.num_interactions:
            raise RuntimeError(f"shard {spec.index}: wrote {written}, expected {spec.num_interactions}")
    finally:
        for f in files.values():
            f.close()
    return written


_WORKER_EXPANSION = None


def _worker_init(expansion) -> None:
    global _WORKER_EXPANSION
    _WORKER_EXPANSION = expansion


def _worker_write(spec, directory: str) -> int:
    return _write_shard(_WORKER_EXPANSION, spec, directory)


def write_expansion(expansion, out_dir: str, workers: int = 1,
                    max_shard_interactions: int | None = None, progress: bool = True) -> dict:
    """Writes every shard of `expansion` and `metadata.json` into `out_dir` atomically.

    Args:
      expansion: an `Expansion`.
      out_dir: destination directory; must not exist (never overwritten).
      workers: processes writing shards in parallel (fork start method).
      max_shard_interactions: split rows of R^ into shards of at most this many interactions
        (whole blocks); default one shard per row of R^.
      progress: show a tqdm progress bar (interactions).

    Returns:
      The metadata dict, plus `seconds` and `interactions_per_second` of this write.
    """
    from tqdm.auto import tqdm

    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise OutputExistsError(f"output directory {out_dir} already exists; "
                                "choose a new --out or remove it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    specs = expansion.shards(max_shard_interactions)
    t0 = time.perf_counter()
    try:
        bar = tqdm(total=expansion.num_interactions, unit="int", unit_scale=True,
                   disable=not progress, desc="expand")
        if workers <= 1:
            for spec in specs:
                bar.update(_write_shard(expansion, spec, tmp))
        else:
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_worker_init,
                    initargs=(expansion,)) as pool:
                futures = [pool.submit(_worker_write, s, tmp) for s in specs]
                for fut in concurrent.futures.as_completed(futures):
                    bar.update(fut.result())
        bar.close()
        meta = expansion.metadata()
        meta["shards"] = [
            {"file": f"part-{s.index:05d}", "row": s.row, "col_start": s.col_start,
             "col_stop": s.col_stop, "start": s.start, "num_interactions": s.num_interactions}
            for s in specs]
        with open(os.path.join(tmp, "metadata.json"), "w") as f:
            json.dump(meta, f, indent=1)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    meta["seconds"] = seconds
    meta["interactions_per_second"] = expansion.num_interactions / max(seconds, 1e-9)
    return meta


def read_metadata(out_dir: str) -> dict:
    path = os.path.join(out_dir, "metadata.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {out_dir} is not a complete fractal-tfds "
                                "expansion (write it with `fractal-tfds expand`)")
    with open(path) as f:
        return json.load(f)


def read_expansion(out_dir: str, mmap: bool = True, as_int64: bool = True
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Iterates the shards of a written expansion as (users, items, values) NumPy arrays.

    Args:
      out_dir: a directory written by `Expansion.write` / `fractal-tfds expand`.
      mmap: memory-map the columns (no copy until touched).
      as_int64: convert ids to int64 (otherwise the stored `id_dtype`).
    """
    meta = read_metadata(out_dir)
    for shard in meta["shards"]:
        cols = [np.load(os.path.join(out_dir, f"{shard['file']}.{c}.npy"),
                        mmap_mode="r" if mmap else None) for c in COLUMNS]
        if as_int64:
            cols[0], cols[1] = cols[0].astype(np.int64), cols[1].astype(np.int64)
        yield cols[0], cols[1], cols[2]
