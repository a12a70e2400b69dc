"""The `Ratings` container: a real user x item rating matrix and what came with it."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.sparse as sp


@dataclasses.dataclass(frozen=True, eq=False)
class Ratings:
    """A user x item rating matrix R loaded from a real source.

    Attributes:
      matrix: CSR matrix, shape (num_users, num_items), float64 values after preprocessing
        (`preprocessing`), sorted column indices, no duplicates. Explicit zeros are kept: the
        sparsity pattern is the set of observed interactions, whatever their value.
      raw_values: (nnz,) float32, the original rating of each stored entry, aligned with
        `matrix.data` (so `raw_values[k]` is the rating behind `matrix.data[k]`).
      user_ids: (num_users,) original user id of each row (int64, or str for string ids).
      item_ids: (num_items,) original item id of each column.
      timestamps: (nnz,) int64 seconds since the epoch aligned with `matrix.data`, or None
        when the source has none.
      source: what was loaded (a MovieLens name or a file path).
      checksum: sha256 hex digest of the ratings file's bytes (as read, before decompression).
      preprocessing: 'paper' (centred by the global mean, rescaled into [-1, 1]), 'raw'
        (ratings as they are) or 'implicit' (every observed interaction is 1.0).
      filters: one dict per filter applied, in order, with keys `name`, `rows_removed`,
        `users_removed`, `items_removed`.
    """

    matrix: sp.csr_matrix
    raw_values: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    source: str = ""
    checksum: str = ""
    preprocessing: str = "raw"
    filters: tuple[dict, ...] = ()

    def __post_init__(self) -> None:
        m = self.matrix
        if not sp.isspmatrix_csr(m) and not isinstance(m, sp.csr_array):
            raise TypeError("Ratings.matrix must be a scipy.sparse CSR matrix")
        if self.raw_values.shape != (m.nnz,):
            raise ValueError(f"raw_values has shape {self.raw_values.shape}, expected ({m.nnz},)")
        if self.timestamps is not None and self.timestamps.shape != (m.nnz,):
            raise ValueError(f"timestamps has shape {self.timestamps.shape}, expected ({m.nnz},)")
        if self.user_ids.shape != (m.shape[0],) or self.item_ids.shape != (m.shape[1],):
            raise ValueError("user_ids/item_ids must have one entry per row/column of matrix")

    @property
    def num_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    @functools.cached_property
    def entry_rows(self) -> np.ndarray:
        """(nnz,) int32 row (user) index of each stored entry, in CSR order (computed once)."""
        m = self.matrix
        return np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))

    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        values: np.ndarray,
        shape: tuple[int, int] | None = None,
        timestamps: np.ndarray | None = None,
        preprocessing: str = "raw",
        source: str = "arrays",
    ) -> Ratings:
        """Builds Ratings from dense row/column indices (no duplicates), for tests and tools.

        Args:
          users, items: (nnz,) int row and column indices.
          values: (nnz,) ratings; stored both as `matrix.data` and `raw_values`.
          shape: (num_users, num_items); default max index + 1.
        """
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        values = np.asarray(values, np.float64)
        if shape is None:
            shape = (int(users.max()) + 1, int(items.max()) + 1)
        order = np.lexsort((items, users))
        users, items, values = users[order], items[order], values[order]
        if np.any((np.diff(users) == 0) & (np.diff(items) == 0)):
            raise ValueError("duplicate (user, item) pairs in from_arrays input")
        indptr = np.zeros(shape[0] + 1, np.int64)
        np.cumsum(np.bincount(users, minlength=shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix((values, items.astype(np.int32), indptr), shape=shape)
        ts = None if timestamps is None else np.asarray(timestamps, np.int64)[order]
        return cls(
            matrix=matrix,
            raw_values=values.astype(np.float32),
            user_ids=np.arange(shape[0], dtype=np.int64),
            item_ids=np.arange(shape[1], dtype=np.int64),
            timestamps=ts,
            source=source,
            preprocessing=preprocessing,
        )
