"""Shared fixtures: the real ml-latest-small files (FRACTAL_TFDS_TEST_DATA) and small matrices."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fractal_tfds.ratings import Ratings

REAL_DATA_ENV = "FRACTAL_TFDS_TEST_DATA"


def real_data_dir() -> str:
    """Folder with ml-latest-small (ratings.csv, ml-latest-small.zip), or skip (fail under CI)."""
    path = os.environ.get(REAL_DATA_ENV)
    if path and os.path.exists(os.path.join(path, "ratings.csv")):
        return path
    reason = (f"set {REAL_DATA_ENV} to a folder with the ml-latest-small files "
              "(ratings.csv and ml-latest-small.zip) to run the real-data tests")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but real data is missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_ratings() -> Ratings:
    """ml-latest-small with the paper's preprocessing (centred, rescaled into [-1, 1])."""
    from fractal_tfds.sources import load_ratings

    return load_ratings(os.path.join(real_data_dir(), "ratings.csv"), preprocessing="paper")


@pytest.fixture(scope="session")
def real_ratings_raw() -> Ratings:
    from fractal_tfds.sources import load_ratings

    return load_ratings(os.path.join(real_data_dir(), "ratings.csv"), preprocessing="raw")


@pytest.fixture
def small_ratings() -> Ratings:
    """A 40 x 30 random sparse matrix with heavy-tailed degrees and timestamps (seeded)."""
    rng = np.random.default_rng(7)
    users, items = [], []
    for u in range(40):
        deg = int(np.clip(rng.pareto(1.2) * 3 + 2, 2, 30))
        cols = rng.choice(30, size=deg, replace=False)
        users += [u] * deg
        items += list(cols)
    values = rng.integers(1, 11, size=len(users)) / 2.0
    ts = rng.integers(1_000_000, 2_000_000, size=len(users))
    return Ratings.from_arrays(users, items, values, shape=(40, 30), timestamps=ts)
