"""Shard planning and shard writing for fractal_movielens, free of TensorFlow imports.

Everything a worker needs (R, R^, the split) is saved once by the driver into one `.npz`
state file; a worker (a local loop, a Beam DoFn on DirectRunner/Dataflow/Flink/Spark) loads it
(cached per process), rebuilds the `Expansion` (deterministic from R, R^ and the seed) and
writes whole shards, streaming: at most `CHUNK` interactions (interactions layout) or one
user range (user_histories layout) are in memory at a time, never a whole shard.

Tasks are plain tuples so Beam can pickle them; keys are their positions, so the output is
identical whatever the runner, the number of workers or the order tasks run in.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from fractal_tfds.builder.fractal_movielens import records
from fractal_tfds.expansion import Expansion
from fractal_tfds.ratings import Ratings
from fractal_tfds.reduce import Reduced
from fractal_tfds.split import Split, entry_kept

CHUNK = 1 << 20  # interactions generated, encoded and written at once

INTERACTION_FEATURES = [("user_id", "int64"), ("item_id", "int64"), ("rating", "float32"),
                        ("timestamp", "int64"), ("source_user_id", "int64"),
                        ("source_movie_id", "int64")]
HISTORY_FEATURES = [("user_id", "int64_scalar"), ("item_ids", "int64"), ("ratings", "float32"),
                    ("timestamps", "int64"), ("source_user_ids", "int64"),
                    ("source_movie_ids", "int64")]


# ----------------------------------------------------------------------------- state
@dataclasses.dataclass(eq=False)
class State:
    """An expansion, its leave-last-out split and cached per-entry columns."""

    expansion: Expansion
    split: Split
    options: dict

    def __post_init__(self):
        r = self.expansion.ratings
        self.timestamps = r.timestamps
        self.source_users = _int_ids(r.user_ids)
        self.source_items = _int_ids(r.item_ids)
        self._inverse: dict = {}

    def inverse(self, name: str, t: int) -> np.ndarray:
        key = (name, t)
        if key not in self._inverse:
            table = getattr(self.expansion, name)[t]
            inv = np.empty_like(table)
            inv[table] = np.arange(len(table), dtype=table.dtype)
            self._inverse[key] = inv
        return self._inverse[key]


def _int_ids(ids: np.ndarray) -> np.ndarray:
    """Original ids as int64, or the row/column index when ids are not integers."""
    if np.issubdtype(np.asarray(ids).dtype, np.integer):
        return np.asarray(ids, np.int64)
    return np.arange(len(ids), dtype=np.int64)


def save_state(state: State, path: str) -> None:
    """Writes R, R^ and the split into one .npz (local path or any `etils.epath` path)."""
    x, r, red = state.expansion, state.expansion.ratings, state.expansion.reduced
    arrays = dict(
        indptr=r.matrix.indptr, indices=r.matrix.indices, data=r.matrix.data,
        shape=np.array(r.matrix.shape), raw_values=r.raw_values, user_ids=r.user_ids,
        item_ids=r.item_ids,
        timestamps=r.timestamps if r.timestamps is not None else np.zeros(0, np.int64),
        has_timestamps=np.array(r.timestamps is not None),
        r_matrix=red.matrix, r_keep_prob=red.keep_prob, r_singular_values=red.singular_values,
        r_scale=np.array(red.scale), r_u_tilde=red.u_tilde, r_v_tilde=red.v_tilde,
        last_entry=state.split.last_entry, test_block_col=state.split.test_block_col,
        meta=np.array(json.dumps(dict(
            options=state.options, preset=x.preset, seed=x.seed, permutation=x.permutation,
            sampling=x.sampling, values=x.values, source=r.source, checksum=r.checksum,
            preprocessing=r.preprocessing, diagnostics=red.diagnostics,
            fingerprint=x.fingerprint()))),
    )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _write_bytes(path, buf.getvalue())


_STATE_CACHE: dict[str, State] = {}


def load_state(path: str) -> State:
    """Loads (once per process) the state saved by `save_state` and checks its fingerprint."""
    if path in _STATE_CACHE:
        return _STATE_CACHE[path]
    with np.load(io.BytesIO(_read_bytes(path)), allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        matrix = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        ratings = Ratings(matrix=matrix, raw_values=z["raw_values"], user_ids=z["user_ids"],
                          item_ids=z["item_ids"],
                          timestamps=z["timestamps"] if bool(z["has_timestamps"]) else None,
                          source=meta["source"], checksum=meta["checksum"],
                          preprocessing=meta["preprocessing"])
        reduced = Reduced(matrix=z["r_matrix"], keep_prob=z["r_keep_prob"],
                          singular_values=z["r_singular_values"], scale=float(z["r_scale"]),
                          u_tilde=z["r_u_tilde"], v_tilde=z["r_v_tilde"],
                          diagnostics=meta["diagnostics"])
        split = Split(last_entry=z["last_entry"], test_block_col=z["test_block_col"])
    x = Expansion(ratings, reduced, meta["preset"], meta["seed"], permutation=meta["permutation"],
                  sampling=meta["sampling"], values=meta["values"])
    if x.fingerprint() != meta["fingerprint"]:
        raise RuntimeError(f"{path}: rebuilt expansion differs from the driver's (fingerprint)")
    state = State(x, split, meta["options"])
    _STATE_CACHE[path] = state
    return state


def _read_bytes(path: str) -> bytes:
    if "://" in str(path):
        from etils import epath

        return epath.Path(path).read_bytes()
    with open(path, "rb") as f:
        return f.read()


def _write_bytes(path: str, data: bytes) -> None:
    if "://" in str(path):
        from etils import epath

        epath.Path(path).write_bytes(data)
        return
    with open(path, "wb") as f:
        f.write(data)


def _file_size(path: str) -> int:
    if "://" in str(path):
        from etils import epath

        return int(epath.Path(path).stat().length)
    return os.path.getsize(path)


# ----------------------------------------------------------------------------- planning
def plan_tasks(state: State, layout: str, max_shard_interactions: int) -> list[tuple]:
    """The shards of one build, in order; each is written by exactly one task.

    interactions:  ('interactions', index, row, col_start, col_stop) -- runs of whole blocks
                   of one block-row of R^ (`Expansion.shards`).
    user_histories: ('user_histories', index, row, lo, hi) -- synthetic users
                   row*m + lo .. row*m + hi - 1 (a range of one block-row: all their
                   interactions live in that row shard).
    """
    x = state.expansion
    tasks = []
    if layout == "interactions":
        for s in x.shards(max_interactions=max_shard_interactions):
            tasks.append(("interactions", s.index, s.row, s.col_start, s.col_stop))
        return tasks
    if layout != "user_histories":
        raise ValueError(f"unknown layout {layout!r}")
    for i in range(x.m2):
        row_total = int(x.counts[i].sum())
        per_task = max(1, int(x.m * max_shard_interactions // max(row_total, 1)))
        for lo in range(0, x.m, per_task):
            tasks.append(("user_histories", len(tasks), i, lo, min(x.m, lo + per_task)))
    return tasks


# ----------------------------------------------------------------------------- generation
def block_columns(state: State, i: int, j: int, start: int = 0, stop: int | None = None) -> dict:
    """Interactions start..stop-1 of block (i, j) as feature columns, plus an `is_test` mask."""
    x = state.expansion
    users, items, values, e = x.block(i, j, start, stop, return_entries=True)
    return _columns(state, i, j, users, items, values, e)


def _columns(state, i, j, users, items, values, e) -> dict:
    x = state.expansion
    return dict(
        user_id=users.astype(np.int64), item_id=items.astype(np.int64),
        rating=values.astype(np.float32),
        timestamp=state.timestamps[e],
        source_user_id=state.source_users[x.entry_rows[e]],
        source_movie_id=state.source_items[x.entry_cols[e]],
        is_test=state.split.is_test(x, i, j, users, e),
    )


def user_range_columns(state: State, i: int, lo: int, hi: int) -> dict:
    """All interactions of synthetic users i*m+lo .. i*m+hi-1, grouped by user and sorted by
    (user, timestamp, item), as feature columns plus `is_test`.

    Computed from R's CSR rows behind those users in every block (i, j) (inverse row maps and
    `split.entry_kept`), never by generating whole blocks: the same interactions as
    `Expansion.block`, a different order.
    """
    x = state.expansion
    m, n = x.m, x.n
    indptr = x.ratings.matrix.indptr.astype(np.int64)
    local = np.arange(lo, hi, dtype=np.int64)
    parts = []
    for j in range(x.n2):
        if x.permutation == "none":
            real = local
        elif x.permutation == "coherent":
            real = state.inverse("row_perm", i)[local].astype(np.int64)
        else:
            t = state.inverse("row_perm", i)[local].astype(np.int64) - int(x.row_shift[i, j])
            t = np.where(t < 0, t + m, t)
            real = state.inverse("row_inner", j)[t].astype(np.int64)
        starts, lens = indptr[real], indptr[real + 1] - indptr[real]
        total = int(lens.sum())
        if total == 0:
            continue
        first = np.zeros(len(lens), np.int64)
        np.cumsum(lens[:-1], out=first[1:])
        e = (np.repeat(starts - first, lens) + np.arange(total, dtype=np.int64))
        owner = np.repeat(local, lens)
        keep = entry_kept(x, e, i, j)
        e, owner = e[keep].astype(np.int32), owner[keep]
        users = owner + i * m
        items = x.col_map(i, j, x.entry_cols[e]).astype(np.int64) + j * n
        vals = x.entry_values[e]
        if x.values == "product":
            vals = vals * x.block_weight[i, j]
        parts.append(_columns(state, i, j, users, items, vals, e))
    if not parts:
        return {k: np.zeros(0, np.int64) for k in ("user_id", "item_id", "timestamp")}
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cols["item_id"], cols["timestamp"], cols["user_id"]))
    return {k: v[order] for k, v in cols.items()}


# ----------------------------------------------------------------------------- writing
class _Writer:
    def __init__(self, path: str, file_format: str):
        self.path, self.file_format, self.count = path, file_format, 0
        if file_format == "tfrecord":
            import tensorflow as tf  # only TFRecord needs TensorFlow

            self._w = tf.io.TFRecordWriter(path)
        elif file_format == "array_record":
            from array_record.python import array_record_module

            self._w = array_record_module.ArrayRecordWriter(path, "group_size:1")
        else:
            raise ValueError(f"unsupported file_format {file_format!r} (tfrecord, array_record)")

    def write_all(self, recs) -> None:
        w = self._w.write
        for r in recs:
            w(r)
            self.count += 1

    def close(self) -> None:
        self._w.close()


def write_task(state: State, task: tuple, train_path: str, test_path: str,
               file_format: str) -> dict:
    """Writes one task's train and test shards; returns their lengths and sizes."""
    kind, index, i, a, b = task
    x = state.expansion
    w_train, w_test = _Writer(train_path, file_format), _Writer(test_path, file_format)
    try:
        if kind == "interactions":
            enc = records.ScalarEncoder(INTERACTION_FEATURES)
            for j in range(a, b):
                k = int(x.counts[i, j])
                for s in range(0, k, CHUNK):
                    cols = block_columns(state, i, j, s, min(k, s + CHUNK))
                    test = cols.pop("is_test")
                    for mask, w in ((~test, w_train), (test, w_test)):
                        if mask.any():
                            w.write_all(enc.records({k_: v[mask] for k_, v in cols.items()}))
        else:
            enc = records.SequenceEncoder(HISTORY_FEATURES)
            cols = user_range_columns(state, i, a, b)
            if len(cols["user_id"]):
                test = cols.pop("is_test")
                for mask, w in ((~test, w_train), (test, w_test)):
                    sub = {k_: v[mask] for k_, v in cols.items()}
                    w.write_all(enc.records(*_segments(sub)))
    finally:
        w_train.close()
        w_test.close()
    return dict(index=index, train=w_train.count, test=w_test.count,
                train_bytes=_file_size(train_path), test_bytes=_file_size(test_path))


def _segments(cols: dict) -> tuple[dict, np.ndarray]:
    users = cols["user_id"]
    if len(users) == 0:
        return {name: np.zeros(0) for name, _ in HISTORY_FEATURES}, np.zeros(1, np.int64)
    change = np.flatnonzero(np.diff(users)) + 1
    starts = np.concatenate([[0], change, [len(users)]]).astype(np.int64)
    return dict(user_id=users[starts[:-1]], item_ids=cols["item_id"], ratings=cols["rating"],
                timestamps=cols["timestamp"], source_user_ids=cols["source_user_id"],
                source_movie_ids=cols["source_movie_id"]), starts


def beam_write_task(task: tuple, state_path: str, paths: dict, file_format: str) -> str:
    """Beam entry point: loads the state (cached per worker), writes one task, returns JSON."""
    state = load_state(state_path)
    train_path, test_path = paths[task[1]]
    return json.dumps(write_task(state, task, train_path, test_path, file_format))


def iter_examples(state: State, task: tuple, split_name: str) -> Iterator[tuple[int, dict]]:
    """The reference path: (key, feature dict) per example, the way TFDS writers expect.

    Slow (one Python dict per example); used by `_generate_examples` and by the tests that
    check the vectorized records against TFDS's own serializer.
    """
    kind, index, i, a, b = task
    want_test = split_name == "test"
    x = state.expansion
    if kind == "interactions":
        for j in range(a, b):
            cols = block_columns(state, i, j)
            base = int(x.cum_counts[i * x.n2 + j])
            sel = np.flatnonzero(cols.pop("is_test") == want_test)
            for k in sel:
                yield base + int(k), {name: cols[name][k] for name, _ in INTERACTION_FEATURES}
        return
    cols = user_range_columns(state, i, a, b)
    if not len(cols["user_id"]):
        return
    test = cols.pop("is_test")
    sub, starts = _segments({k: v[test == want_test] for k, v in cols.items()})
    for k in range(len(starts) - 1):
        s, t = starts[k], starts[k + 1]
        ex = {"user_id": sub["user_id"][k]}
        for name, _ in HISTORY_FEATURES[1:]:
            ex[name] = sub[name][s:t]
        yield int(sub["user_id"][k]), ex
