"""The expansion engine: determinism, bijections, sampling recipe, Proposition 1 and Theorem 1."""

import numpy as np
import pytest

from fractal_tfds import Expansion, read_expansion, reduce_ratings
from fractal_tfds.expansion import PRESETS
from fractal_tfds.statistics import measure

ALL_PRESETS = sorted(PRESETS)


def _blocks(x):
    return [(i, j) for i in range(x.m2) for j in range(x.n2)]


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_blocks_any_order_same_result(small_ratings, preset):
    red = reduce_ratings(small_ratings, (4, 3))
    a = Expansion(small_ratings, red, preset, seed=11)
    b = Expansion(small_ratings, red, preset, seed=11)
    order = _blocks(a)
    for i, j in reversed(order):  # b produces blocks in reverse order
        for x, y in zip(a.block(i, j), b.block(i, j)):
            np.testing.assert_array_equal(x, y)
    assert a.fingerprint() == b.fingerprint()
    c = Expansion(small_ratings, red, preset, seed=12)
    if preset != "paper":
        assert c.fingerprint() != a.fingerprint()


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_blocks_are_sets_inside_their_tile(small_ratings, preset):
    red = reduce_ratings(small_ratings, (4, 3))
    x = Expansion(small_ratings, red, preset, seed=3)
    for i, j in _blocks(x):
        users, items, values, entries = x.block(i, j, return_entries=True)
        assert len(users) == x.counts[i, j]
        assert len(np.unique(entries)) == len(entries), "no entry twice in a block"
        assert users.min() >= i * x.m and users.max() < (i + 1) * x.m
        assert items.min() >= j * x.n and items.max() < (j + 1) * x.n
        pairs = users.astype(np.int64) * x.num_items + items
        assert len(np.unique(pairs)) == len(pairs), "permutations are bijections"
        if x.values == "product":
            np.testing.assert_allclose(values, red.matrix[i, j] * small_ratings.matrix.data[entries],
                                       rtol=1e-6)


def test_block_permutations_differ_between_blocks(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "paper-shuffled", seed=0)
    rows = np.arange(x.m, dtype=np.int32)
    maps = {(i, j): tuple(x.row_map(i, j, rows)) for i, j in _blocks(x)}
    assert len(set(maps.values())) == len(maps)
    for i, j in _blocks(x):
        assert sorted(maps[i, j]) == list(range(x.m))


def test_coherent_user_is_copy_of_one_real_user(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent", seed=0)
    for i, j in _blocks(x):
        users, _, _, entries = x.block(i, j, return_entries=True)
        np.testing.assert_array_equal(x.source_row(users), x.entry_rows[entries])


def test_exact_count_recipe(small_ratings):
    red = reduce_ratings(small_ratings, (4, 3))
    x = Expansion(small_ratings, red, "movielens-1b")
    nnz, p = small_ratings.nnz, red.keep_prob
    want = np.minimum(np.maximum(np.floor(nnz * np.clip(p, 0.01, 0.95)), 1), nnz)
    want[p == p.max()] = nnz
    np.testing.assert_array_equal(x.counts, want)
    assert x.num_interactions == want.sum() == x.expected_num_interactions


def test_interaction_ranges_match_blocks(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent", seed=2)
    full = [np.concatenate(c) for c in zip(*(x.block(i, j) for i, j in _blocks(x)))]
    for start, stop in [(0, x.num_interactions), (5, 17), (x.num_interactions - 3, 10**12)]:
        part = x.interactions(start, stop)
        for a, b in zip(part, full):
            np.testing.assert_array_equal(a, b[start:stop])
    specs = x.shards(max_interactions=int(x.counts.max()) * 2)
    assert len(specs) > x.m2
    assert sum(s.num_interactions for s in specs) == x.num_interactions


def test_int64_sizes(small_ratings):
    """655-billion-scale counts index in int64 without overflow."""
    red = reduce_ratings(small_ratings, (4, 3))
    x = Expansion(small_ratings, red, "paper")
    assert x.cum_counts.dtype == np.int64
    big = np.int64(655_000_000_000)
    assert (big * np.int64(x.m2)) // np.int64(x.m2) == big


@pytest.mark.parametrize("preset,options", [
    ("paper", {}),
    ("coherent", {"sampling": "none", "values": "product"}),
    ("coherent", {"sampling": "none"}),
])
def test_proposition1_theorem1_on_real_data(real_ratings, tmp_path, preset, options):
    red = reduce_ratings(real_ratings, (2, 3))
    x = Expansion(real_ratings, red, preset, seed=1, **options)
    x.write(str(tmp_path / "out"), progress=False)
    ms = measure(read_expansion(str(tmp_path / "out")), x.num_users, x.num_items, singular=8)
    assert ms["num_interactions"] == x.num_interactions == 6 * real_ratings.nnz
    for got, want in [(ms["row_sums"], x.row_sums()), (ms["column_sums"], x.column_sums()),
                      (ms["row_counts"], x.row_sums("count")),
                      (ms["singular_values"], x.singular_values(8))]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("preset", ["coherent", "movielens-1b"])
def test_sampled_counts_within_few_std(real_ratings, tmp_path, preset):
    red = reduce_ratings(real_ratings, (4, 4))
    x = Expansion(real_ratings, red, preset, seed=4)
    x.write(str(tmp_path / "out"), progress=False)
    ms = measure(read_expansion(str(tmp_path / "out")), x.num_users, x.num_items)
    assert ms["num_interactions"] == x.num_interactions
    keep = x.expected_counts / x.nnz
    var_block = keep * (1 - keep)  # binomial; windows of a random order are hypergeometric (less)
    user_deg = np.diff(real_ratings.matrix.indptr)
    item_deg = np.bincount(real_ratings.matrix.indices, minlength=x.n)
    checks = [(ms["row_counts"], x.row_sums("count")), (ms["column_counts"], x.column_sums("count"))]
    for got, mean in checks:
        assert abs(got.sum() - mean.sum()) < 1e-6 * mean.sum()
    if x.permutation == "coherent":
        rows = x.source_row(np.arange(x.num_users))
        row_var = np.repeat(var_block.sum(axis=1), x.m) * user_deg[rows]
        inv_cols = np.argsort(x.col_perm, axis=1)
        cols = inv_cols[np.arange(x.num_items) // x.n, np.arange(x.num_items) % x.n]
        col_var = np.repeat(var_block.sum(axis=0), x.n) * item_deg[cols]
        for (got, mean), var in zip(checks, [row_var, col_var]):
            z = (got - mean)[var > 0] / np.sqrt(var[var > 0])
            assert np.abs(z).max() < 6
            assert 0.3 < np.mean(z ** 2) < 1.5, np.mean(z ** 2)


def test_block_permutations_break_kronecker(real_ratings, tmp_path):
    """Per-block permutations keep the analytic per-id sums but not Proposition 1/Theorem 1."""
    red = reduce_ratings(real_ratings, (2, 3))
    x = Expansion(real_ratings, red, "paper-shuffled", seed=1)
    assert not x.is_kronecker
    x.write(str(tmp_path / "out"), progress=False)
    ms = measure(read_expansion(str(tmp_path / "out")), x.num_users, x.num_items, singular=8)
    exact_rows = x.row_sums(exact=True)
    np.testing.assert_allclose(ms["row_sums"], exact_rows, atol=1e-5 * np.abs(exact_rows).max())
    kron_rows = np.sort(x.row_sums(exact=False))
    dev_rows = np.abs(np.sort(ms["row_sums"]) - kron_rows).max() / np.abs(kron_rows).max()
    dev_sv = np.abs(ms["singular_values"] - x.singular_values(8)).max() / x.singular_values(1)[0]
    assert dev_rows > 0.1 and dev_sv > 0.05, (dev_rows, dev_sv)


def test_statistics_summary(real_ratings):
    x = Expansion(real_ratings, reduce_ratings(real_ratings, (16, 32)), "coherent")
    s = x.statistics()
    assert s["num_users"] == 16 * 610 and s["num_items"] == 32 * 9724
    assert s["num_interactions"] == x.num_interactions
    assert 0.8 < s["user_degree_spread_ratio"] < 1.3
