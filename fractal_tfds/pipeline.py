"""On-the-fly `tf.data` pipeline: the expansion's interactions synthesized lazily in TensorFlow.

`as_dataset(expansion, batch_size)` reads nothing from disk and holds only the expansion's
O(nnz(R) + m2 m + n2 n) tables. Each element is a batch dict (`user_id`, `item_id` int64,
`rating` float32, plus `label` float32 with negatives). It produces exactly the multiset of
interactions that `Expansion.write` produces: the same tables and the same integer arithmetic
(`Expansion.block`), mirrored op for op in TensorFlow.

Order. The canonical order (shuffle=False) is the written order: blocks row-major, then each
block's interactions. Shuffled, the global index space [0, N) is cut into chunks of
L = batch_size / chunks_per_batch consecutive interactions and every epoch visits the chunks in
a fresh keyed pseudo-random order (a 4-round Feistel permutation with cycle walking, keyed by
(seed, epoch)); a batch is `chunks_per_batch` chunks. Within a chunk, interactions are a window
of a seeded random order of R's entries, so a chunk holds L random (user, item) pairs of one or
two blocks; a batch thus mixes `chunks_per_batch` random blocks of R^. Without sampling each block
is also rotated by a per-(epoch, block) random offset, so chunk contents change every epoch.
This is block-level, not element-level, randomness: good for SGD on large batches, not a
uniform shuffle of single interactions.

Performance: per-element work is int32 gathers into small tables, compiled with XLA
(`jit_compile=True`); chunk bookkeeping (a few values per batch) runs outside XLA.
No `py_function` or `from_generator`: the pipeline runs on the tf.data service.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from fractal_tfds.expansion import random_stream

INT32_MAX = 2**31 - 1
STREAM_SHUFFLE_ORDER = 101  # counter-based stream id of the in-block order when shuffling


# ----------------------------------------------------------------------------- permutations
def _round_hash(x: tf.Tensor, key: tf.Tensor, mask: int) -> tf.Tensor:
    """32-bit integer hash of x (int64 < 2^32) mixed with key, masked; no int64 overflow."""
    z = tf.bitwise.bitwise_xor(x, key) & 0xFFFFFFFF
    z = (z * 0x45D9F3B) & 0xFFFFFFFF
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, 16))
    z = (z * 0x45D9F3B) & 0xFFFFFFFF
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, 16))
    return z & mask


def feistel_permute(x: tf.Tensor, size: int, key: tf.Tensor, rounds: int = 4) -> tf.Tensor:
    """Keyed bijection of [0, size) applied to int64 tensor x (balanced Feistel, cycle walking).

    Args:
      x: int64 values in [0, size).
      size: domain size (>= 1).
      key: int64 scalar key (e.g. from (seed, epoch)).
    """
    if size <= 1:
        return x
    bits = max(2, math.ceil(math.log2(size)))
    half = (bits + 1) // 2
    mask = (1 << half) - 1
    keys = [(key * 0x2545F491 + 0x6A09E667 * (r + 1)) & 0xFFFFFFFF for r in range(rounds)]

    def once(v):
        left, right = tf.bitwise.right_shift(v, half), v & mask
        for r in range(rounds):
            left, right = right, tf.bitwise.bitwise_xor(left, _round_hash(right, keys[r], mask))
        return tf.bitwise.left_shift(left, half) | right

    y = once(x)
    y = tf.while_loop(lambda v: tf.reduce_any(v >= size),
                      lambda v: [tf.where(v >= size, once(v), v)], [y])
    return y[0] if isinstance(y, (list, tuple)) else y


# ----------------------------------------------------------------------------- layout
@dataclasses.dataclass(frozen=True)
class StreamLayout:
    """How the global index [0, N) is cut into chunks and batches (all Python ints)."""

    num_interactions: int
    batch_size: int
    chunk_size: int
    chunks_per_batch: int
    num_chunks: int
    steps_per_epoch: int
    max_blocks_per_chunk: int


def _layout(expansion, batch_size: int, chunks_per_batch: int) -> StreamLayout:
    n = expansion.num_interactions
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    p = chunks_per_batch if batch_size % chunks_per_batch == 0 else 1
    chunk = batch_size // p
    num_chunks = max(1, -(-n // chunk))
    steps = -(-num_chunks // p)
    cum = expansion.cum_counts
    # A chunk starting at the last element of block b reaches global index cum[b+1] - 1 + chunk - 1.
    nonempty = np.flatnonzero(np.diff(cum) > 0)
    last = np.searchsorted(cum, cum[nonempty + 1] - 1 + chunk - 1, side="right") - 1
    span = int((np.minimum(last, len(cum) - 2) - nonempty).max()) + 1 if len(nonempty) else 1
    return StreamLayout(n, batch_size, chunk, p, num_chunks, steps, span)


# ----------------------------------------------------------------------------- the pipeline
class LazyExpansion:
    """TensorFlow view of an `Expansion`: tables as constants, batch functions, datasets."""

    def __init__(self, expansion, split=None, shuffle: bool = True, seed: int | None = None):
        x = expansion
        self.x = x
        if x.nnz >= 2**30:
            raise ValueError("R has more than 2^30 entries: int32 index arithmetic would overflow")
        if max(x.m2 * x.m, x.n2 * x.n, x.m2 * x.n2) >= INT32_MAX:
            raise ValueError("synthetic user/item/block tables exceed int32")
        c = tf.constant
        self.cum = c(x.cum_counts, tf.int64)
        self.block_row = c(np.repeat(np.arange(x.m2, dtype=np.int32), x.n2))
        self.block_col = c(np.tile(np.arange(x.n2, dtype=np.int32), x.m2))
        self.weight = c(x.block_weight.ravel().astype(np.float32))
        self.offsets = c(x.offsets.ravel().astype(np.int32))
        self.entry_rows = c(x.entry_rows)
        # Per-position source tables: entry e = source[p] at position p of a block's window, with
        # R's row, column and value pre-gathered in that order (one gather level, not two).
        # Sampling: windows of the expansion's entry order. Shuffled without sampling: a seeded
        # order of R's entries with a per-(epoch, block) rotation. Canonical: CSR order.
        if x.entry_order is not None:
            source = x.entry_order
        elif shuffle:
            seed = x.seed if seed is None else seed
            order = random_stream(seed, STREAM_SHUFFLE_ORDER).permutation(x.nnz)
            source = np.concatenate([order, order]).astype(np.int32)
        else:
            source = np.arange(x.nnz, dtype=np.int32)
        self.source = c(source)
        self.src_rows = c(x.entry_rows[source])
        self.src_cols = c(x.entry_cols[source])
        self.src_values = c(x.entry_values[source])
        self.rotate = x.entry_order is None and shuffle
        self.row_perm = None if x.row_perm is None else c(x.row_perm.ravel())
        self.col_perm = None if x.col_perm is None else c(x.col_perm.ravel())
        self.row_inner = None if x.row_inner is None else c(x.row_inner.ravel())
        self.col_inner = None if x.col_inner is None else c(x.col_inner.ravel())
        self.row_shift = None if x.row_shift is None else c(x.row_shift.ravel())
        self.col_shift = None if x.col_shift is None else c(x.col_shift.ravel())
        self.split = split
        if split is not None:
            self.last_entry = c(split.last_entry)
            self.test_col = c(split.test_block_col)

    # -- per element (XLA) ------------------------------------------------------------
    def _elements(self, b, k, rot):
        """(block ids b, in-block positions k) int32 [..] -> ids, values, entry, block col."""
        x = self.x
        if x.entry_order is not None:
            p = tf.gather(self.offsets, b) + k
        elif self.rotate:
            p = tf.gather(rot, b) + k
        else:
            p = k
        r = tf.gather(self.src_rows, p)
        col = tf.gather(self.src_cols, p)
        value = tf.gather(self.src_values, p)
        i = tf.gather(self.block_row, b)
        j = tf.gather(self.block_col, b)
        if x.permutation == "none":
            lu, li = r, col
        elif x.permutation == "coherent":
            lu = tf.gather(self.row_perm, i * x.m + r)
            li = tf.gather(self.col_perm, j * x.n + col)
        else:
            u = tf.gather(self.row_inner, j * x.m + r) + tf.gather(self.row_shift, b)
            u = tf.where(u >= x.m, u - x.m, u)
            lu = tf.gather(self.row_perm, i * x.m + u)
            v = tf.gather(self.col_inner, i * x.n + col) + tf.gather(self.col_shift, b)
            v = tf.where(v >= x.n, v - x.n, v)
            li = tf.gather(self.col_perm, j * x.n + v)
        user = tf.cast(i, tf.int64) * x.m + tf.cast(lu, tf.int64)
        item = tf.cast(j, tf.int64) * x.n + tf.cast(li, tf.int64)
        if x.values == "product":
            value = value * tf.gather(self.weight, b)
        return user, item, value, p, j

    def _is_test(self, user, p, j):
        e = tf.gather(self.source, p)
        r = tf.gather(self.entry_rows, e)
        return (tf.gather(self.last_entry, r) == e) & (tf.gather(self.test_col, user) == j)

    def batch_fn(self, layout: StreamLayout, jit_compile: bool = True):
        """Compiled fn(rel0 [P] i32, b0 [P] i32, bounds [P, D] i32, valid_len [P] i32, rot)
        -> dict of [P * L] tensors plus `valid`/`keep` masks."""
        lay = layout
        d = lay.max_blocks_per_chunk
        split = self.split

        def fn(rel0, b0, bounds, valid_len, rot):
            t = tf.range(lay.chunk_size, dtype=tf.int32)[None, :]
            rel = rel0[:, None] + t  # [P, L] position relative to the start of block b0
            dblk = tf.zeros_like(rel)
            for s in range(1, d):
                dblk += tf.cast(rel >= bounds[:, s:s + 1], tf.int32)
            b = b0[:, None] + dblk
            k = rel - tf.gather(bounds, dblk, batch_dims=1)
            user, item, value, e, j = self._elements(b, k, rot)
            keep = t < valid_len[:, None]
            if split is not None:
                test = self._is_test(user, e, j)
                keep = keep & ~test  # the train stream; test batches come from the Split
            flat = lambda a: tf.reshape(a, [-1])
            return {"user_id": flat(user), "item_id": flat(item), "rating": flat(value),
                    "keep": flat(keep)}

        return tf.function(fn, jit_compile=jit_compile, reduce_retracing=False)

    # -- per batch (outside XLA): chunk bookkeeping -----------------------------------
    def chunk_fn(self, layout: StreamLayout, shuffle: bool, seed: int):
        lay = layout
        x = self.x
        d = lay.max_blocks_per_chunk
        nblocks = x.m2 * x.n2
        need_rot = self.rotate

        def fn(step):
            epoch = step // lay.steps_per_epoch
            b = step % lay.steps_per_epoch
            pos = b * lay.chunks_per_batch + tf.range(lay.chunks_per_batch, dtype=tf.int64)
            exists = pos < lay.num_chunks
            pos = tf.where(exists, pos, 0)
            key = tf.bitwise.bitwise_xor(tf.cast(seed, tf.int64) * 0x9E3779B1 & 0xFFFFFFFF,
                                         epoch * 0x85EBCA6B & 0xFFFFFFFF)
            # Only full chunks are permuted; a partial last chunk stays last, so that only the
            # epoch's last batch can be short (drop_remainder loses fewer than batch_size).
            full_chunks = lay.num_interactions // lay.chunk_size
            if shuffle and full_chunks > 1:
                permuted = feistel_permute(tf.minimum(pos, full_chunks - 1), full_chunks, key)
                chunk = tf.where(pos < full_chunks, permuted, pos)
            else:
                chunk = pos
            g0 = chunk * lay.chunk_size
            valid_len = tf.where(exists, tf.minimum(lay.num_interactions - g0, lay.chunk_size), 0)
            b0 = tf.searchsorted(self.cum, g0, side="right", out_type=tf.int64) - 1
            b0 = tf.minimum(b0, nblocks - 1)
            idx = tf.minimum(b0[:, None] + tf.range(d, dtype=tf.int64)[None, :], nblocks)
            start = tf.gather(self.cum, b0)
            bounds = tf.gather(self.cum, idx) - start[:, None]
            bounds = tf.where(tf.range(d)[None, :] == 0, tf.zeros_like(bounds), bounds)
            bounds = tf.cast(tf.minimum(bounds, INT32_MAX), tf.int32)
            rel0 = tf.cast(g0 - start, tf.int32)
            if need_rot:
                rot = tf.random.stateless_uniform(
                    [nblocks], seed=tf.stack([tf.cast(seed, tf.int64), epoch]),
                    minval=0, maxval=x.nnz, dtype=tf.int32)
            else:
                rot = tf.zeros([1], tf.int32)
            return (rel0, tf.cast(b0, tf.int32), bounds, tf.cast(valid_len, tf.int32), rot,
                    epoch, b)

        return fn


def as_dataset(
    expansion,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    epochs: int | None = 1,
    start_step: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    negatives: int = 0,
    negatives_check: str = "none",
    split: str | None = None,
    drop_remainder: bool = False,
    chunks_per_batch: int = 8,
    jit_compile: bool = True,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of batches synthesized on the fly from the expansion.

    Args:
      expansion: an `Expansion`.
      batch_size: interactions (positives) per batch; with `input_context`, the global batch
        size (each pipeline gets `input_context.get_per_replica_batch_size(batch_size)`).
      shuffle: keyed pseudo-random chunk order, new every epoch (see module docstring); False
        gives the canonical (written) order.
      seed: order seed (default: the expansion's seed).
      epochs: number of passes, None for forever.
      start_step: resume at this raw step (steps count batches before filtering; the
        `steps_per_epoch` attribute of the returned dataset's layout is `dataset.layout`).
      num_shards, shard_index: disjoint shards by step (step % num_shards == shard_index).
      input_context: a `tf.distribute.InputContext`; overrides num_shards/shard_index.
      negatives: k > 0 adds k negatives per positive: items uniform over [0, num_items) from
        stateless RNG keyed by (seed, epoch, step), label 0, rating 0; positives get label 1.
        Collisions with positives are not checked (as the fast NCF loaders) unless
        `negatives_check="exact"`.
      negatives_check: 'none', or 'exact' for small expansions (<= 200M interactions): every
        positive (user, item) key is held in a sorted table and each negative is drawn
        uniformly among the items its user has no interaction with (no rejection loop).
      split: None (all interactions), 'train' (leave-last-out train part) or 'test'.
      drop_remainder: only full batches (static shapes).
      chunks_per_batch: chunks mixed per batch when shuffling.
      jit_compile: XLA-compile the per-element function.

    Returns:
      A dataset of dicts {user_id: int64[B], item_id: int64[B], rating: float32[B]} (+ label).

    Example:
      >>> ds = as_dataset(expansion, 65536, shuffle=True)
      >>> for batch in ds.take(1): print(batch["user_id"].shape)
    """
    from fractal_tfds.split import leave_last_out

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        num_shards, shard_index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    seed = expansion.seed if seed is None else int(seed)
    if negatives_check not in ("none", "exact"):
        raise ValueError(f"negatives_check must be 'none' or 'exact', got {negatives_check!r}")
    positives = positive_keys(expansion) if negatives and negatives_check == "exact" else None
    sp = leave_last_out(expansion) if split is not None else None
    if split == "test":
        return _test_dataset(expansion, sp, batch_size, num_shards, shard_index, drop_remainder,
                             negatives, seed, positives)
    lazy = LazyExpansion(expansion, sp, shuffle, seed)
    lay = _layout(expansion, batch_size, chunks_per_batch)
    chunk_fn = lazy.chunk_fn(lay, shuffle, seed)
    batch_fn = lazy.batch_fn(lay, jit_compile)
    filtered = split is not None

    def make(step):
        rel0, b0, bounds, valid_len, rot, epoch, b = chunk_fn(step)
        out = batch_fn(rel0, b0, bounds, valid_len, rot)
        keep = out.pop("keep")
        if filtered:
            out = {k: tf.boolean_mask(v, keep) for k, v in out.items()}
        else:
            full = tf.reduce_all(valid_len == lay.chunk_size)
            out = {k: tf.cond(full, lambda v=v: v, lambda v=v: tf.boolean_mask(v, keep))
                   for k, v in out.items()}
        if negatives:
            out = _add_negatives(out, negatives, expansion.num_items, seed, epoch, b, positives)
        return out

    stop = start_step + (2**62 if epochs is None else epochs * lay.steps_per_epoch - start_step)
    first = start_step + ((shard_index - start_step) % num_shards)
    ds = tf.data.Dataset.range(first, max(first, stop), num_shards)
    ds = ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    group = 1 + negatives
    if filtered:
        ds = ds.rebatch(batch_size * group, drop_remainder=drop_remainder)
    elif drop_remainder:
        ds = ds.filter(lambda e: tf.shape(e["user_id"])[0] == batch_size * group)
        ds = ds.map(lambda e: {k: tf.ensure_shape(v, [batch_size * group]) for k, v in e.items()})
    ds = ds.prefetch(tf.data.AUTOTUNE)
    ds.layout = lay  # type: ignore[attr-defined]
    return ds


MAX_EXACT_NEGATIVE_POSITIVES = 200_000_000


def positive_keys(expansion) -> tuple[tf.Tensor, tf.Tensor]:
    """Tables for exact negatives (small expansions only), both sorted int64 (P,):

    keys[k] = user * num_items + item of every positive, and
    gaps[k] = user * num_items + item - (rank of the item among the user's positives), so that
    the t-th item a user has NOT interacted with is t + #{k of the user: gaps[k] <= key(t)}.
    """
    n = expansion.num_interactions
    if n > MAX_EXACT_NEGATIVE_POSITIVES:
        raise ValueError(f"negatives_check='exact' holds every positive in memory; this expansion "
                         f"has {n:,} (limit {MAX_EXACT_NEGATIVE_POSITIVES:,}): use 'none'")
    keys = np.empty(n, np.int64)
    step = 1 << 24
    for start in range(0, n, step):
        users, items, _ = expansion.interactions(start, start + step)
        keys[start:start + len(users)] = users.astype(np.int64) * expansion.num_items + items
    keys = np.unique(keys)
    users = keys // expansion.num_items
    first = np.searchsorted(keys, users * expansion.num_items)
    gaps = keys - (np.arange(len(keys)) - first)
    return tf.constant(keys), tf.constant(gaps)


def _add_negatives(out, k, num_items, seed, epoch, step, positives=None):
    """[B] positives -> [B * (1 + k)]: each positive followed by its k negatives.

    With `positives` (from `positive_keys`), negatives are drawn uniformly among the items the
    user has no interaction with (exact, no rejection loop); a user who has every item gets
    uniform items.
    """
    n = tf.shape(out["user_id"])[0]
    rng_seed = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, step])
    if positives is None:
        neg = tf.random.stateless_uniform([n, k], seed=rng_seed, minval=0, maxval=num_items,
                                          dtype=tf.int64)
    else:
        keys, gaps = positives
        base = out["user_id"] * num_items  # [n]
        start = tf.searchsorted(keys, base, side="left", out_type=tf.int64)
        stop = tf.searchsorted(keys, base + num_items, side="left", out_type=tf.int64)
        available = num_items - (stop - start)  # [n]
        u = tf.random.stateless_uniform([n, k], seed=rng_seed, dtype=tf.float64)
        t = tf.cast(tf.floor(u * tf.cast(tf.maximum(available, 1), tf.float64)[:, None]),
                    tf.int64)
        t = tf.minimum(t, tf.maximum(available, 1)[:, None] - 1)
        query = tf.reshape(base[:, None] + t, [-1])
        below = tf.reshape(tf.searchsorted(gaps, query, side="right", out_type=tf.int64),
                           [n, k]) - start[:, None]
        neg = tf.where(available[:, None] > 0, t + below, t)
    users = tf.repeat(out["user_id"][:, None], 1 + k, axis=1)
    items = tf.concat([out["item_id"][:, None], neg], axis=1)
    rating = tf.concat([out["rating"][:, None], tf.zeros([n, k], tf.float32)], axis=1)
    label = tf.concat([tf.ones([n, 1], tf.float32), tf.zeros([n, k], tf.float32)], axis=1)
    flat = lambda a: tf.reshape(a, [-1])
    return {"user_id": flat(users), "item_id": flat(items), "rating": flat(rating),
            "label": flat(label)}


def _test_dataset(expansion, sp, batch_size, num_shards, shard_index, drop_remainder,
                  negatives, seed, positives=None):
    users, items, values = sp.test_interactions(expansion)
    ds = tf.data.Dataset.from_tensor_slices(
        {"user_id": users.astype(np.int64), "item_id": items.astype(np.int64),
         "rating": values.astype(np.float32)})
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    if negatives:
        ds = ds.enumerate().map(lambda s, e: _add_negatives(e, negatives, expansion.num_items,
                                                            seed, tf.constant(-1, tf.int64), s,
                                                            positives))
    return ds.prefetch(tf.data.AUTOTUNE)
