"""The lazy tf.data pipeline: the same multiset as the written expansion, shards, epochs, splits."""

import numpy as np
import pytest
import tensorflow as tf

from fractal_tfds import Expansion, leave_last_out, read_expansion, reduce_ratings
from fractal_tfds.pipeline import as_dataset, feistel_permute


def _rows(u, i, v):
    """(k, 3) int64 rows (user, item, float32 bits), sorted: a canonical multiset."""
    a = np.stack([np.asarray(u, np.int64), np.asarray(i, np.int64),
                  np.asarray(v, np.float32).view(np.int32).astype(np.int64)], 1)
    return a[np.lexsort(a.T[::-1])]


def _collect(ds):
    parts = [(b["user_id"].numpy(), b["item_id"].numpy(), b["rating"].numpy()) for b in ds]
    if not parts:
        return np.zeros((0, 3), np.int64)
    return _rows(*[np.concatenate(c) for c in zip(*parts)])


@pytest.mark.parametrize("preset", ["paper", "paper-shuffled", "movielens-1b", "coherent"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_lazy_equals_written_on_real_data(real_ratings, tmp_path, preset, shuffle):
    x = Expansion(real_ratings, reduce_ratings(real_ratings, (2, 3)), preset, seed=5)
    x.write(str(tmp_path / "out"), workers=1, progress=False)
    written = _rows(*[np.concatenate(c) for c in zip(*read_expansion(str(tmp_path / "out")))])
    lazy = _collect(x.as_dataset(8192, shuffle=shuffle))
    assert lazy.shape == written.shape == (x.num_interactions, 3)
    np.testing.assert_array_equal(lazy, written)


def test_bernoulli_sampling_lazy_equals_blocks(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent",
                  sampling="bernoulli", seed=2)
    want = _rows(*x.interactions(0, x.num_interactions))
    np.testing.assert_array_equal(_collect(as_dataset(x, 64, shuffle=True)), want)


def test_batches_static_shapes_and_dtypes(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "movielens-1b")
    ds = as_dataset(x, 64, drop_remainder=True)
    spec = ds.element_spec
    assert spec["user_id"].shape == [64] and spec["user_id"].dtype == tf.int64
    assert spec["item_id"].dtype == tf.int64 and spec["rating"].dtype == tf.float32
    n = sum(int(b["user_id"].shape[0]) for b in ds)
    assert x.num_interactions - 64 < n <= x.num_interactions


def test_shuffled_order_differs_by_epoch_and_is_reproducible(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "paper")
    n = x.num_interactions
    ds = as_dataset(x, 32, shuffle=True, epochs=2)
    flat = np.concatenate([b["user_id"].numpy() for b in ds])
    e1, e2 = flat[:n], flat[n:]
    assert len(flat) == 2 * n and not np.array_equal(e1, e2)
    np.testing.assert_array_equal(np.sort(e1), np.sort(e2))
    again = np.concatenate([b["user_id"].numpy() for b in as_dataset(x, 32, shuffle=True, epochs=2)])
    np.testing.assert_array_equal(flat, again)
    canonical = np.concatenate([b["user_id"].numpy() for b in as_dataset(x, 32, shuffle=False)])
    np.testing.assert_array_equal(canonical, x.interactions(0, n)[0])


def test_resume_at_step(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent")
    full = [b["item_id"].numpy() for b in as_dataset(x, 16, epochs=2)]
    resumed = [b["item_id"].numpy() for b in as_dataset(x, 16, epochs=2, start_step=5)]
    assert len(resumed) == len(full) - 5
    for a, b in zip(full[5:], resumed):
        np.testing.assert_array_equal(a, b)


def test_shards_disjoint_and_complete(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "movielens-1b")
    want = _rows(*x.interactions(0, x.num_interactions))
    shards = [_collect(as_dataset(x, 16, num_shards=3, shard_index=s)) for s in range(3)]
    assert all(len(s) > 0 for s in shards)
    np.testing.assert_array_equal(_rows(*np.concatenate(shards).T[:2],
                                        np.concatenate(shards)[:, 2].astype(np.int32)
                                        .view(np.float32)), want)
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                     num_replicas_in_sync=2)
    ds = as_dataset(x, 32, input_context=ctx)
    assert ds.element_spec["user_id"].shape.as_list() in ([16], [None])


def test_distribute_datasets_from_function(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent")
    strategy = tf.distribute.get_strategy()
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: as_dataset(x, 32, input_context=ctx))
    n = sum(int(b["user_id"].shape[0]) for b in dist)
    assert n == x.num_interactions


def test_negatives(small_ratings):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "movielens-1b")
    b = next(iter(as_dataset(x, 16, negatives=4, drop_remainder=True)))
    assert b["user_id"].shape == [80]
    label = b["label"].numpy().reshape(16, 5)
    assert (label[:, 0] == 1).all() and (label[:, 1:] == 0).all()
    users = b["user_id"].numpy().reshape(16, 5)
    assert (users == users[:, :1]).all()
    items = b["item_id"].numpy().reshape(16, 5)[:, 1:]
    assert items.min() >= 0 and items.max() < x.num_items and len(np.unique(items)) > 10


def test_split_train_plus_test_is_everything(real_ratings_raw):
    x = Expansion(real_ratings_raw, reduce_ratings(real_ratings_raw, (2, 3)), "coherent", seed=1)
    sp = leave_last_out(x)
    train = _collect(as_dataset(x, 8192, split="train"))
    test = _collect(as_dataset(x, 8192, split="test"))
    assert len(test) == sp.num_test > 0.95 * x.num_users
    assert len(train) + len(test) == x.num_interactions
    everything = _rows(*x.interactions(0, x.num_interactions))
    np.testing.assert_array_equal(_rows(*np.concatenate([train, test]).T[:2],
                                        np.concatenate([train, test])[:, 2].astype(np.int32)
                                        .view(np.float32)), everything)
    # Leave-last-out: every test item carries its synthetic user's latest timestamp.
    ts = x.ratings.timestamps
    users = np.arange(x.num_users)
    src = x.source_row(users)
    latest = ts[sp.last_entry[src]]
    has_test = sp.test_block_col >= 0
    assert has_test.sum() == sp.num_test
    assert np.all(latest[has_test] >= ts[sp.last_entry[src[has_test]]])


def test_feistel_is_a_bijection():
    for size in [1, 2, 7, 64, 1000, 4097]:
        x = tf.range(size, dtype=tf.int64)
        y = feistel_permute(x, size, tf.constant(12345, tf.int64)).numpy()
        assert sorted(y.tolist()) == list(range(size))
        if size > 64:
            assert not np.array_equal(y, np.arange(size))


def test_tf_data_service_dynamic_sharding(small_ratings):
    """Runs on the tf.data service (no py_function): every element exactly once, 2 workers."""
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "movielens-1b")
    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    workers = [tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address)) for _ in range(2)]
    ds = as_dataset(x, 16, shuffle=True)
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=dispatcher.target))
    got = _collect(ds)
    np.testing.assert_array_equal(got, _rows(*x.interactions(0, x.num_interactions)))
    del workers


def test_exact_negative_check_avoids_positives(small_ratings):
    # A dense-ish expansion: many uniform negatives would hit positives without the check.
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (2, 3)), "paper")
    users, items, _ = x.interactions(0, x.num_interactions)
    positives = set(zip(users.tolist(), items.tolist()))
    full = set(np.flatnonzero(np.bincount(users, minlength=x.num_users) == x.num_items).tolist())
    density = len(positives) / (x.num_users * x.num_items)
    assert density > 0.03
    for check, want_collisions in [("none", True), ("exact", False)]:
        ds = as_dataset(x, 64, negatives=8, negatives_check=check, epochs=2)
        hits = 0
        for b in ds:
            label = b["label"].numpy() == 0
            pairs = zip(b["user_id"].numpy()[label].tolist(), b["item_id"].numpy()[label].tolist())
            hits += sum(p in positives and p[0] not in full for p in pairs)
        assert (hits > 0) == want_collisions, (check, hits)
