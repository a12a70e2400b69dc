"""Builds fractal_movielens/latest-small-4x4-movielens-1b offline from the real ml-latest-small
(FRACTAL_TFDS_TEST_DATA: a folder with ml-latest-small.zip or its ratings.csv) and checks the
counts against the core's analytic ones and that `tfds.load` reads it back."""

import os

import pytest

DATA_ENV = "FRACTAL_TFDS_TEST_DATA"
CONFIG = "latest-small-4x4-movielens-1b"


@pytest.fixture(scope="module")
def data_dir():
    d = os.environ.get(DATA_ENV)
    if not d:
        msg = (f"{DATA_ENV} is not set: point it at a folder holding ml-latest-small.zip "
               "(e.g. /work/shared/data/movielens-latest-small) to run the integration test")
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return d


def test_build_latest_small_offline_and_read_back(data_dir, tmp_path):
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    import fractal_tfds
    from fractal_tfds.builder.fractal_movielens import fractal_movielens_dataset_builder as fm
    from fractal_tfds.sources import load_ratings

    builder = tfds.builder(f"fractal_movielens/{CONFIG}", data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=data_dir))

    cfg = builder.builder_config
    ratings = load_ratings("ml-latest-small", data_dir=data_dir, download=False,
                           preprocessing=cfg.preprocessing,
                           min_distinct_timestamps=cfg.min_distinct_timestamps)
    reduced = fractal_tfds.reduce_ratings(ratings, cfg.factors, seed=cfg.seed, resize=cfg.resize)
    x = fractal_tfds.Expansion(ratings, reduced, cfg.preset, cfg.seed)
    split = fractal_tfds.leave_last_out(x)

    splits = builder.info.splits
    assert splits["test"].num_examples == split.num_test
    assert splits["train"].num_examples == x.num_interactions - split.num_test
    assert builder.info.metadata["tables_sha256"] == x.fingerprint()
    assert builder.info.metadata["num_users"] == x.num_users

    # tfds.load reads it back (registered name, prepared data, no download).
    ds = tfds.load(f"fractal_movielens/{CONFIG}", split="test", data_dir=str(tmp_path),
                   download=False, batch_size=4096)
    users = np.concatenate([b["user_id"].numpy() for b in ds])
    assert len(users) == split.num_test and len(np.unique(users)) == split.num_test
    assert users.max() < x.num_users

    # The fast batched reader sees every train interaction once, and only valid ids.
    n, max_item = 0, 0
    for b in fm.batched_dataset(builder, "train", batch_size=65536):
        n += int(tf.size(b["user_id"]))
        max_item = max(max_item, int(tf.reduce_max(b["item_id"])))
    assert n == splits["train"].num_examples and max_item < x.num_items


def test_tfds_cli_build_with_imports(data_dir, tmp_path):
    """The documented command: `tfds build --imports fractal_tfds --config ...` (offline)."""
    import shutil
    import subprocess

    tfds_cli = shutil.which("tfds")
    if tfds_cli is None:
        pytest.fail("the `tfds` command is missing: install tensorflow-datasets")
    out = subprocess.run(
        [tfds_cli, "build", "fractal_movielens", "--imports", "fractal_tfds", "--config", CONFIG,
         "--data_dir", str(tmp_path), "--manual_dir", data_dir],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    files = os.listdir(tmp_path / "fractal_movielens" / CONFIG / "1.0.0")
    assert any(f.startswith("fractal_movielens-train.tfrecord") for f in files)
