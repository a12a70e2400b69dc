"""Tests of the fractal_movielens builder on tiny hand-written dummy data (dummy_data/ratings.csv,
8 users, 10 movies, 42 ratings)."""

import importlib.util
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fractal_tfds.builder.fractal_movielens import fractal_movielens_dataset_builder as fm
from fractal_tfds.builder.fractal_movielens import pipeline
from fractal_tfds.expansion import Expansion
from fractal_tfds.reduce import reduce_ratings
from fractal_tfds.sources import load_ratings
from fractal_tfds.split import leave_last_out

DUMMY = os.path.join(os.path.dirname(__file__), "dummy_data")
DUMMY_RATINGS = os.path.join(DUMMY, "ratings.csv")


class FractalMovielensTest(tfds.testing.DatasetBuilderTestCase):
    """4x4 MovieLens-1B recipe on the dummy ratings: 8 users x 16 = 32 synthetic users."""

    DATASET_CLASS = fm.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["latest-small-4x4-movielens-1b"]
    SPLITS = {"train": 320, "test": 32}
    DL_DOWNLOAD_RESULT = "ratings.csv"
    SKIP_TF1_GRAPH_MODE = True


class FractalMovielensHistoriesTest(tfds.testing.DatasetBuilderTestCase):
    """Same expansion, one example per synthetic user."""

    DATASET_CLASS = fm.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["latest-small-4x4-movielens-1b-user-histories"]
    SPLITS = {"train": 32, "test": 32}
    DL_DOWNLOAD_RESULT = "ratings.csv"
    SKIP_TF1_GRAPH_MODE = True


def _state(preset="movielens-1b", factors=(4, 4), preprocessing="implicit", mdt=3):
    r = load_ratings(DUMMY_RATINGS, preprocessing=preprocessing, min_distinct_timestamps=mdt)
    x = Expansion(r, reduce_ratings(r, factors, seed=0, resize="bilinear"), preset, seed=0)
    return pipeline.State(x, leave_last_out(x), {})


def _read_records(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(path)]


@pytest.mark.parametrize("preset,preprocessing,mdt", [
    ("movielens-1b", "implicit", 3), ("paper", "paper", 0), ("coherent", "raw", 0)])
@pytest.mark.parametrize("layout", ["interactions", "user_histories"])
def test_vectorized_records_equal_tfds_serializer(tmp_path, layout, preset, preprocessing, mdt):
    """The fast writer's records == TFDS's own serialization of the reference dict examples."""
    state = _state(preset, preprocessing=preprocessing, mdt=mdt)
    features = fm._features(layout)
    tasks = pipeline.plan_tasks(state, layout, 100)
    assert len(tasks) > 1
    for t in tasks:
        tr, te = str(tmp_path / f"train{t[1]}"), str(tmp_path / f"test{t[1]}")
        res = pipeline.write_task(state, t, tr, te, "tfrecord")
        for path, split in ((tr, "train"), (te, "test")):
            got = [tf.train.Example.FromString(r) for r in _read_records(path)]
            want = [tf.train.Example.FromString(features.serialize_example(ex))
                    for _, ex in pipeline.iter_examples(state, t, split)]
            assert got == want
            assert res[split] == len(want)


@pytest.mark.parametrize("preset", ["movielens-1b", "paper", "coherent"])
def test_user_histories_hold_the_same_interactions(preset):
    state = _state(preset, preprocessing="implicit" if preset == "movielens-1b" else "raw")
    x = state.expansion
    by_block = []
    for i in range(x.m2):
        for j in range(x.n2):
            c = pipeline.block_columns(state, i, j)
            by_block.append(np.stack([c["user_id"], c["item_id"], c["timestamp"],
                                      c["rating"].view(np.int32), c["is_test"]], 1))
    by_user = []
    for t in pipeline.plan_tasks(state, "user_histories", 50):
        c = pipeline.user_range_columns(state, *t[2:])
        if len(c["user_id"]):
            by_user.append(np.stack([c["user_id"], c["item_id"], c["timestamp"],
                                     c["rating"].view(np.int32), c["is_test"]], 1))
    a, b = np.concatenate(by_block), np.concatenate(by_user)
    assert len(a) == x.num_interactions
    np.testing.assert_array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])
    assert int(a[:, 4].sum()) == state.split.num_test


def _custom_config(name):
    return fm.FractalMovieLensConfig(
        name=name, source=DUMMY_RATINGS, factors=(4, 4), preset="movielens-1b",
        preprocessing="implicit", min_distinct_timestamps=3, resize="bilinear",
        max_shard_interactions=60)


def _all_records(builder, split):
    src = builder.as_data_source(split=split)
    return [tuple(np.asarray(ex[k]).item() for k in sorted(ex)) for ex in src]


def test_beam_direct_runner_two_workers_equals_local_build(tmp_path):
    """DirectRunner, 2 worker processes, array_record: same shards and examples as the local
    build; `tfds.data_source` gives random access."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    local = fm.Builder(config=_custom_config("custom-tiny"), data_dir=str(tmp_path / "local"),
                       file_format="array_record")
    local.download_and_prepare()
    opts = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    beamed = fm.Builder(config=_custom_config("custom-tiny"), data_dir=str(tmp_path / "beam"),
                        file_format="array_record")
    beamed.download_and_prepare(download_config=tfds.download.DownloadConfig(
        beam_runner=beam.runners.DirectRunner(), beam_options=opts))
    for split in ("train", "test"):
        assert local.info.splits[split].shard_lengths == beamed.info.splits[split].shard_lengths
        assert len(local.info.splits[split].shard_lengths) > 2
        assert _all_records(local, split) == _all_records(beamed, split)
    assert local.info.splits["train"].num_examples + local.info.splits["test"].num_examples == 352
    ds = beamed.as_data_source()
    assert len(ds["train"]) == 320 and ds["test"][3]["user_id"] >= 0
    idx = [5, 0, 319, 5]
    batch = fm.random_access_batch(beamed, "train", idx, features=["user_id", "item_id"])
    for k, i in enumerate(idx):
        assert batch["user_id"][k].numpy() == ds["train"][i]["user_id"]
        assert batch["item_id"][k].numpy() == ds["train"][i]["item_id"]
    leftovers = [f for f in os.listdir(beamed.data_dir) if "fractal_state" in f]
    assert not leftovers


def test_cluster_config_fails_fast_without_beam_runner(tmp_path):
    b = tfds.builder("fractal_movielens/20m-128x256-paper", data_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="Beam"):
        b.download_and_prepare()
    assert not list(tmp_path.rglob("*.zip"))


def test_importing_twice_does_not_register_twice():
    path = fm.__file__
    spec = importlib.util.spec_from_file_location(
        "fractal_movielens_again.fractal_movielens_dataset_builder", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)  # would raise "already registered" otherwise
    finally:
        del sys.modules[spec.name]  # would raise "already registered" otherwise
    assert tfds.builder_cls("fractal_movielens") is fm.Builder


def test_config_names():
    names = {c.name for c in fm.Builder.BUILDER_CONFIGS}
    for n in ["latest-small-4x4-movielens-1b", "latest-small-16x32-movielens-1b",
              "latest-small-16x32-paper", "latest-small-16x32-coherent", "100k-16x32-paper",
              "1m-16x32-movielens-1b", "20m-16x32-movielens-1b", "20m-16x32-paper",
              "20m-128x256-paper"]:
        assert n in names and n + "-user-histories" in names
