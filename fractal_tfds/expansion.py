"""The expansion engine (Algorithm 1, Eq. 2): a pure, deterministic description of R~ = R^ (x) R.

An `Expansion` holds R (as flat per-entry arrays), R^ and a handful of small random tables drawn
from one seed through counter-based Philox streams. Every consumer (the file writer, the TFDS
builder, the lazy tf.data pipeline, the statistics) derives interactions from these same tables
with the same integer arithmetic, so they agree by construction.

Block (i, j) of R~ (0 <= i < m2, 0 <= j < n2) holds `counts[i, j]` interactions. Its k-th
interaction comes from entry e of R (CSR order), where

    e = k                                   without sampling,
    e = entry_order[offsets[i, j] + k]      with sampling (a window of one seeded permutation of
                                            R's entries, stored twice so a window never wraps);

and maps to

    user  = i * m + row_map(i, j, row[e]),   item = j * n + col_map(i, j, col[e]),
    value = R^[i, j] * R[e] ('product'), 1.0 ('binary') or the original rating ('original').

Permutations (`row_map`, `col_map`), all bijections of [0, m) and [0, n):
  none      identity: the paper's exact Kronecker product.
  coherent  row_perm[i][r] and col_perm[j][c]: one permutation per block-row and per block-column.
            Synthetic user i*m + row_perm[i][r] is a (thinned) copy of real user r.
  block     row_outer[i][(row_inner[j][r] + row_shift[i, j]) mod m] (and the same for columns):
            a different pseudo-random order in every block (Eq. 2 as in the MovieLens-1B
            reference); a synthetic user mixes n2 different real users.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import numpy as np

from fractal_tfds.ratings import Ratings
from fractal_tfds.reduce import Reduced

PERMUTATIONS = ("none", "coherent", "block")
SAMPLINGS = ("none", "bernoulli", "exact")
VALUES = ("product", "binary", "original")

PRESETS: dict[str, dict[str, str]] = {
    # The paper's deterministic Kronecker product: exact Proposition 1 and Theorem 1.
    "paper": dict(permutation="none", sampling="none", values="product"),
    # Eq. 2 with shuffled blocks (no Kronecker-SVD shortcut); breaks Proposition 1 per user.
    "paper-shuffled": dict(permutation="block", sampling="none", values="product"),
    # The published MovieLens-1B / ml-20mx16x32 recipe (use with implicit input).
    "movielens-1b": dict(permutation="block", sampling="exact", values="binary"),
    # Recommended: realistic sizes, heavy-tailed degrees and the original rating scale survive.
    "coherent": dict(permutation="coherent", sampling="exact", values="original"),
}

# Stream ids for the counter-based generators: Philox(key=[seed, stream], counter=[a, b, 0, 0]).
_STREAM_ENTRY_ORDER = 1
_STREAM_OFFSETS = 2
_STREAM_COUNTS = 3
_STREAM_ROW_PERM = 4
_STREAM_COL_PERM = 5
_STREAM_ROW_INNER = 6
_STREAM_COL_INNER = 7
_STREAM_SHIFTS = 8

# Exact-count sampling of the MovieLens-1B reference: p clipped into [0.01, 0.95].
EXACT_MIN_PROB = 0.01
EXACT_MAX_PROB = 0.95


def random_stream(seed: int, stream: int, a: int = 0, b: int = 0) -> np.random.Generator:
    """A counter-based NumPy generator for (seed, stream, a, b): same numbers in any process."""
    key = np.array([seed % 2**64, stream], dtype=np.uint64)
    counter = np.array([a, b, 0, 0], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter))


def _permutation_table(seed: int, stream: int, rows: int, size: int) -> np.ndarray:
    """(rows, size) int32, row t a permutation of [0, size) drawn from stream (seed, stream, t)."""
    table = np.empty((rows, size), dtype=np.int32)
    for t in range(rows):
        table[t] = random_stream(seed, stream, t).permutation(size)
    return table


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """One output shard: blocks (row, col_start) .. (row, col_stop - 1) of R^.

    `start`/`stop` are the global interaction indices it covers (canonical order).
    """

    index: int
    row: int
    col_start: int
    col_stop: int
    start: int
    stop: int

    @property
    def num_interactions(self) -> int:
        return self.stop - self.start


class Expansion:
    """R~ = R^ (x) R with options; any block, shard or index range on demand.

    Args:
      ratings: the real matrix R (m x n).
      reduced: R^ (m2 x n2), from `reduce_ratings`.
      preset: one of PRESETS ('paper', 'paper-shuffled', 'movielens-1b', 'coherent').
      seed: the one seed every random choice flows from.
      permutation, sampling, values: override the preset's option (see module docstring).

    Example:
      >>> r = Ratings.from_arrays([0, 0, 1, 2], [0, 1, 1, 2], [5.0, 3.0, 4.0, 1.0])
      >>> from fractal_tfds.reduce import reduce_ratings
      >>> x = Expansion(r, reduce_ratings(r, (2, 2)), preset="paper")
      >>> x.num_users, x.num_items, x.num_interactions
      (6, 6, 16)
    """

    def __init__(
        self,
        ratings: Ratings,
        reduced: Reduced,
        preset: str = "coherent",
        seed: int = 0,
        *,
        permutation: str | None = None,
        sampling: str | None = None,
        values: str | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        opts = dict(PRESETS[preset])
        for name, given, allowed in (("permutation", permutation, PERMUTATIONS),
                                     ("sampling", sampling, SAMPLINGS),
                                     ("values", values, VALUES)):
            if given is not None:
                if given not in allowed:
                    raise ValueError(f"unknown {name} {given!r}; choose one of {list(allowed)}")
                opts[name] = given
        self.ratings = ratings
        self.reduced = reduced
        self.preset = preset
        self.seed = int(seed)
        self.permutation: str = opts["permutation"]
        self.sampling: str = opts["sampling"]
        self.values: str = opts["values"]
        self.m, self.n = ratings.num_users, ratings.num_items
        self.m2, self.n2 = reduced.shape
        self.nnz = ratings.nnz
        if self.nnz == 0:
            raise ValueError("R has no interactions")
        if self.nnz >= 2**31 - 1 or self.m >= 2**31 - 1 or self.n >= 2**31 - 1:
            raise ValueError("R is too large: entries, users and items must each fit in int32")
        self._build_tables()

    # ------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        seed, m, n, m2, n2, nnz = self.seed, self.m, self.n, self.m2, self.n2, self.nnz
        mat = self.ratings.matrix
        self.entry_rows = self.ratings.entry_rows  # (nnz,) int32
        self.entry_cols = mat.indices.astype(np.int32, copy=False)  # (nnz,) int32
        if self.values == "product":
            self.entry_values = mat.data.astype(np.float32)
            self.block_weight = self.reduced.matrix.astype(np.float32)
        elif self.values == "original":
            self.entry_values = self.ratings.raw_values.astype(np.float32)
            self.block_weight = np.ones((m2, n2), np.float32)
        else:
            self.entry_values = np.ones(nnz, np.float32)
            self.block_weight = np.ones((m2, n2), np.float32)

        # Keep fraction per block: counts (exact, int64) and expectations (float64).
        p = self.reduced.keep_prob
        if self.sampling == "none":
            counts = np.full((m2, n2), nnz, np.int64)
            expected = counts.astype(np.float64)
        elif self.sampling == "exact":
            clipped = np.clip(p, EXACT_MIN_PROB, EXACT_MAX_PROB)
            counts = np.minimum(np.maximum(np.floor(nnz * clipped), 1), nnz).astype(np.int64)
            counts[p >= p.max()] = nnz  # the reference keeps blocks at the maximum of R^ whole
            expected = counts.astype(np.float64)
        else:  # bernoulli: a Binomial(nnz, p) count, then a uniformly random subset of that size
            counts = random_stream(seed, _STREAM_COUNTS).binomial(nnz, p).astype(np.int64)
            expected = nnz * p
        self.counts = counts
        self.expected_counts = expected
        self.cum_counts = np.zeros(m2 * n2 + 1, np.int64)
        np.cumsum(counts.ravel(), out=self.cum_counts[1:])

        if self.sampling != "none":
            order = random_stream(seed, _STREAM_ENTRY_ORDER).permutation(nnz).astype(np.int32)
            self.entry_order = np.concatenate([order, order])  # (2 nnz,): windows never wrap
            self.entry_position = np.empty(nnz, np.int32)  # inverse of order
            self.entry_position[order] = np.arange(nnz, dtype=np.int32)
            self.offsets = random_stream(seed, _STREAM_OFFSETS).integers(
                0, nnz, size=(m2, n2), dtype=np.int64)
        else:
            self.entry_order = self.entry_position = None
            self.offsets = np.zeros((m2, n2), np.int64)

        self.row_perm = self.col_perm = None
        self.row_inner = self.col_inner = self.row_shift = self.col_shift = None
        if self.permutation == "coherent":
            self.row_perm = _permutation_table(seed, _STREAM_ROW_PERM, m2, m)
            self.col_perm = _permutation_table(seed, _STREAM_COL_PERM, n2, n)
        elif self.permutation == "block":
            self.row_perm = _permutation_table(seed, _STREAM_ROW_PERM, m2, m)  # outer, by i
            self.col_perm = _permutation_table(seed, _STREAM_COL_PERM, n2, n)  # outer, by j
            self.row_inner = _permutation_table(seed, _STREAM_ROW_INNER, n2, m)  # by j
            self.col_inner = _permutation_table(seed, _STREAM_COL_INNER, m2, n)  # by i
            shifts = random_stream(seed, _STREAM_SHIFTS)
            self.row_shift = shifts.integers(0, m, size=(m2, n2), dtype=np.int64).astype(np.int32)
            self.col_shift = shifts.integers(0, n, size=(m2, n2), dtype=np.int64).astype(np.int32)

    # ------------------------------------------------------------------ sizes
    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_users, self.num_items)

    @property
    def num_users(self) -> int:
        """Size of the synthetic user id space, m2 * m (ids 0 .. num_users - 1)."""
        return self.m2 * self.m

    @property
    def num_items(self) -> int:
        """Size of the synthetic item id space, n2 * n."""
        return self.n2 * self.n

    @property
    def num_interactions(self) -> int:
        """Exact number of interactions (the per-block counts are fixed by the seed)."""
        return int(self.cum_counts[-1])

    @property
    def expected_num_interactions(self) -> float:
        """Expected number over the sampling randomness (equals num_interactions if not random)."""
        return float(self.expected_counts.sum())

    @property
    def is_kronecker(self) -> bool:
        """True when R~ is a row/column permutation of W (x) R' (Proposition 1, Theorem 1 exact
        for sums and spectrum; with sampling, exact for the expected matrix)."""
        return self.permutation in ("none", "coherent")

    @property
    def id_dtype(self) -> np.dtype:
        """int32 when every id fits, else int64."""
        big = max(self.num_users, self.num_items) >= 2**31
        return np.dtype(np.int64 if big else np.int32)

    def options(self) -> dict:
        return {"preset": self.preset, "permutation": self.permutation,
                "sampling": self.sampling, "values": self.values, "seed": self.seed,
                "factors": [self.m2, self.n2]}

    # ------------------------------------------------------------------ maps
    def row_map(self, i: int, j: int, rows: np.ndarray) -> np.ndarray:
        """Local synthetic row (0..m-1) in block (i, j) of real rows `rows` (int32 array)."""
        if self.permutation == "none":
            return rows
        if self.permutation == "coherent":
            return self.row_perm[i][rows]
        x = self.row_inner[j][rows] + self.row_shift[i, j]
        x = np.where(x >= self.m, x - self.m, x)
        return self.row_perm[i][x]

    def col_map(self, i: int, j: int, cols: np.ndarray) -> np.ndarray:
        """Local synthetic column (0..n-1) in block (i, j) of real columns `cols`."""
        if self.permutation == "none":
            return cols
        if self.permutation == "coherent":
            return self.col_perm[j][cols]
        x = self.col_inner[i][cols] + self.col_shift[i, j]
        x = np.where(x >= self.n, x - self.n, x)
        return self.col_perm[j][x]

    def source_row(self, users: np.ndarray) -> np.ndarray:
        """Real row (user) behind synthetic users; only for 'none' and 'coherent' permutations."""
        if self.permutation == "block":
            raise ValueError("with block permutations a synthetic user mixes several real users")
        users = np.asarray(users, np.int64)
        i, local = users // self.m, users % self.m
        if self.permutation == "none":
            return local
        inverse = np.argsort(self.row_perm, axis=1)
        return inverse[i, local]

    # ------------------------------------------------------------------ generation
    def block_entries(self, i: int, j: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Entries of R (indices into CSR order) behind interactions start..stop-1 of block (i, j)."""
        k = int(self.counts[i, j])
        stop = k if stop is None else min(int(stop), k)
        if self.entry_order is None:
            return np.arange(start, stop, dtype=np.int32)
        o = int(self.offsets[i, j])
        return self.entry_order[o + start:o + stop]

    def block(self, i: int, j: int, start: int = 0, stop: int | None = None,
              return_entries: bool = False):
        """Interactions of block (i, j) (optionally only its start..stop-1).

        Returns:
          (users, items, values): (k,) `id_dtype`, (k,) `id_dtype`, (k,) float32; plus the
          (k,) int32 entries of R they come from when `return_entries`.
        """
        if not (0 <= i < self.m2 and 0 <= j < self.n2):
            raise IndexError(f"block ({i}, {j}) outside R^ of shape {self.m2}x{self.n2}")
        e = self.block_entries(i, j, start, stop)
        dt = self.id_dtype
        if self.entry_order is None and start == 0 and len(e) == self.nnz:
            rows, cols, vals = self.entry_rows, self.entry_cols, self.entry_values
        else:
            rows, cols, vals = self.entry_rows[e], self.entry_cols[e], self.entry_values[e]
        users = self.row_map(i, j, rows).astype(dt) + dt.type(i * self.m)
        items = self.col_map(i, j, cols).astype(dt) + dt.type(j * self.n)
        if self.values == "product":
            values = vals * self.block_weight[i, j]
        else:
            values = vals.copy() if vals is self.entry_values else vals
        if return_entries:
            return users, items, values, e
        return users, items, values

    def interactions(self, start: int, stop: int, return_entries: bool = False):
        """Interactions with global indices start..stop-1 (canonical order: blocks row-major)."""
        start, stop = max(int(start), 0), min(int(stop), self.num_interactions)
        parts = []
        b = int(np.searchsorted(self.cum_counts, start, side="right")) - 1
        while start < stop:
            i, j = divmod(b, self.n2)
            lo, hi = int(self.cum_counts[b]), int(self.cum_counts[b + 1])
            end = min(stop, hi)
            if end > start:
                parts.append(self.block(i, j, start - lo, end - lo, return_entries))
                start = end
            b += 1
        if not parts:
            dt = self.id_dtype
            empty = [np.zeros(0, dt), np.zeros(0, dt), np.zeros(0, np.float32)]
            return tuple(empty + ([np.zeros(0, np.int32)] if return_entries else []))
        return tuple(np.concatenate(cols) for cols in zip(*parts))

    def shards(self, max_interactions: int | None = None) -> list[ShardSpec]:
        """Output shards: one per row of R^, split into runs of whole blocks when a row holds
        more than `max_interactions` (a block is never split)."""
        specs = []
        for i in range(self.m2):
            j0 = 0
            while j0 < self.n2:
                base = int(self.cum_counts[i * self.n2 + j0])
                j1 = j0 + 1
                while (j1 < self.n2 and max_interactions is not None and
                       int(self.cum_counts[i * self.n2 + j1 + 1]) - base <= max_interactions):
                    j1 += 1
                if max_interactions is None:
                    j1 = self.n2
                specs.append(ShardSpec(len(specs), i, j0, j1, base,
                                       int(self.cum_counts[i * self.n2 + j1])))
                j0 = j1
        return specs

    def shard_blocks(self, spec: ShardSpec) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yields the blocks of one shard in order, as (users, items, values)."""
        for j in range(spec.col_start, spec.col_stop):
            yield self.block(spec.row, j)

    # ------------------------------------------------------------------ statistics
    def row_sums(self, kind: str = "value", exact: bool = True) -> np.ndarray:
        """(num_users,) expected row sums ('value') or degrees ('count'): `statistics.row_sums`."""
        from fractal_tfds import statistics

        return statistics.row_sums(self, kind, exact)

    def column_sums(self, kind: str = "value", exact: bool = True) -> np.ndarray:
        """(num_items,) expected column sums or degrees: `statistics.column_sums`."""
        from fractal_tfds import statistics

        return statistics.column_sums(self, kind, exact)

    def singular_values(self, top: int = 64) -> np.ndarray:
        """(top,) leading singular values by Theorem 1: `statistics.singular_values`."""
        from fractal_tfds import statistics

        return statistics.singular_values(self, top)

    def statistics(self, top_singular: int = 16) -> dict:
        """Analytic summary (sizes, degree spreads, spectrum) as a JSON-friendly dict."""
        from fractal_tfds import statistics

        return statistics.summary(self, top_singular)

    # ------------------------------------------------------------------ consumers
    def as_dataset(self, batch_size: int, **options):
        """A `tf.data.Dataset` synthesizing this expansion lazily (imports TensorFlow).

        Same interactions as `write`; options as `fractal_tfds.pipeline.as_dataset` (shuffle,
        seed, epochs, start_step, num_shards, shard_index, input_context, negatives,
        negatives_check, split, drop_remainder).
        """
        from fractal_tfds.pipeline import as_dataset

        return as_dataset(self, batch_size, **options)

    # ------------------------------------------------------------------ writing
    def metadata(self) -> dict:
        return {
            "format": "fractal-tfds/npy-columns/v1",
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_interactions": self.num_interactions,
            "expected_num_interactions": self.expected_num_interactions,
            "options": self.options(),
            "source": {"name": self.ratings.source, "sha256": self.ratings.checksum,
                       "num_users": self.m, "num_items": self.n, "num_interactions": self.nnz,
                       "preprocessing": self.ratings.preprocessing,
                       "filters": list(self.ratings.filters)},
            "reduced": self.reduced.to_dict(),
            "id_dtype": self.id_dtype.name,
            "value_dtype": "float32",
            "tables_sha256": self.fingerprint(),
        }

    def fingerprint(self) -> str:
        """sha256 over R's entries and every random table: equal fingerprints, equal output."""
        h = hashlib.sha256()
        for a in (self.entry_rows, self.entry_cols, self.entry_values, self.block_weight,
                  self.counts, self.offsets, self.entry_order, self.row_perm, self.col_perm,
                  self.row_inner, self.col_inner, self.row_shift, self.col_shift):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def write(self, out_dir: str, workers: int = 1, max_shard_interactions: int | None = None,
              progress: bool = True) -> dict:
        """Materializes R~ into `out_dir` (must not exist); see `fractal_tfds.io`."""
        from fractal_tfds.io import write_expansion

        return write_expansion(self, out_dir, workers=workers,
                               max_shard_interactions=max_shard_interactions, progress=progress)


__all__ = ["Expansion", "PRESETS", "ShardSpec", "random_stream"]


