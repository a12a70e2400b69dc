"""Leave-last-out train/test split of an expansion, defined without scanning R~.

Definition (used by the TFDS builder, the writer and the lazy tf.data pipeline alike):

  * For every real user r, its latest rating `last_entry[r]`: the entry of row r with the largest
    timestamp (ties: the lowest real item column).
  * Synthetic user u of block-row i takes its rows from real user r_j = row_map^-1(i, j, u) in
    block (i, j) (the same r for every j with 'none'/'coherent' permutations). Its candidates are
    the copies of `last_entry[r_j]` that the expansion kept (block (i, j) keeps an entry when it
    falls in the block's sampling window).
  * The test interaction of u is the candidate with the latest timestamp (ties: the lowest block
    column j, hence the lowest synthetic item id among equal timestamps). Every other interaction
    of u is train. A user with no kept candidate (possible only with sampling, probability
    prod_j (1 - p_ij)) has no test interaction and keeps everything in train.

For 'none'/'coherent' permutations this is exactly MLPerf's leave-last-out (the held-out item has
the user's latest timestamp); with 'block' permutations a synthetic user mixes n2 real users and
the latest of their latest kept ratings is held out. Cost: O(m2 * n2 * m), no pass over R~.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Per-user test interaction of an expansion.

    Attributes:
      last_entry: (m,) int32, the latest entry of R (CSR index) of every real user.
      test_block_col: (num_users,) int32, block column j of the user's test interaction, -1 if
        the user has none. The test interaction is then the copy of
        `last_entry[source row]` in block (i, j).
      num_test: number of test interactions (= users with one).
    """

    last_entry: np.ndarray
    test_block_col: np.ndarray

    @property
    def num_test(self) -> int:
        return int(np.count_nonzero(self.test_block_col >= 0))

    def is_test(self, expansion, i: int, j: int, users: np.ndarray, entries: np.ndarray
                ) -> np.ndarray:
        """(k,) bool: which interactions (users, entries) of block (i, j) are test ones."""
        rows = expansion.entry_rows[entries]
        return (self.last_entry[rows] == entries) & (self.test_block_col[users] == j)

    def test_interactions(self, expansion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, values) of every test interaction, sorted by user."""
        m = expansion.m
        rows = np.arange(m, dtype=np.int32)
        out_u, out_i, out_v = [], [], []
        for i in range(expansion.m2):
            for j in range(expansion.n2):
                users = i * m + expansion.row_map(i, j, rows).astype(np.int64)
                sel = self.test_block_col[users] == j
                if not sel.any():
                    continue
                e = self.last_entry[sel]
                out_u.append(users[sel])
                out_i.append(j * expansion.n + expansion.col_map(i, j, expansion.entry_cols[e])
                             .astype(np.int64))
                v = expansion.entry_values[e]
                out_v.append(v * expansion.block_weight[i, j] if expansion.values == "product" else v)
        if not out_u:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        u, it, v = np.concatenate(out_u), np.concatenate(out_i), np.concatenate(out_v)
        order = np.argsort(u, kind="stable")
        return u[order], it[order], v[order].astype(np.float32)


def last_entries(ratings) -> np.ndarray:
    """(m,) int32 CSR index of each real user's latest rating (ties: lowest column)."""
    if ratings.timestamps is None:
        raise ValueError(f"{ratings.source}: leave-last-out needs timestamps and the source has none")
    mat = ratings.matrix
    rows = ratings.entry_rows
    # Sort entries by (row, -timestamp, column): the first entry of each row is its latest.
    order = np.lexsort((mat.indices, -ratings.timestamps, rows))
    return order[mat.indptr[:-1]].astype(np.int32)


def entry_kept(expansion, entries: np.ndarray, i: int, j: int) -> np.ndarray:
    """(len(entries),) bool: is each entry of R kept in block (i, j)?"""
    if expansion.entry_order is None:
        return np.ones(len(entries), bool)
    pos = expansion.entry_position[entries].astype(np.int64) - expansion.offsets[i, j]
    pos = np.where(pos < 0, pos + expansion.nnz, pos)
    return pos < expansion.counts[i, j]


def leave_last_out(expansion) -> Split:
    """Computes the leave-last-out `Split` of an expansion (see the module docstring)."""
    m, m2, n2 = expansion.m, expansion.m2, expansion.n2
    last = last_entries(expansion.ratings)
    ts = expansion.ratings.timestamps
    rows = np.arange(m, dtype=np.int32)
    test_col = np.full(m2 * m, -1, np.int32)
    best_ts = np.full(m2 * m, np.iinfo(np.int64).min, np.int64)
    for i in range(m2):
        for j in range(n2):
            kept = entry_kept(expansion, last, i, j)  # indexed by real row r
            users = i * m + expansion.row_map(i, j, rows).astype(np.int64)
            t = np.where(kept, ts[last], np.iinfo(np.int64).min)
            better = kept & (t > best_ts[users])  # strict: ties keep the lowest j
            best_ts[users[better]] = t[better]
            test_col[users[better]] = j
    return Split(last_entry=last, test_block_col=test_col)

