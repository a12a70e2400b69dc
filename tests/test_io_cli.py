"""Writer, reader and the `fractal-tfds` CLI: same seed same bytes, atomic output, clear errors."""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fractal_tfds import Expansion, read_expansion, read_metadata, reduce_ratings
from fractal_tfds.cli import main
from fractal_tfds.io import OutputExistsError


def _files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".npy"))


def test_same_seed_same_bytes_any_worker_count(small_ratings, tmp_path):
    red = reduce_ratings(small_ratings, (4, 3))
    x = Expansion(small_ratings, red, "movielens-1b", seed=9)
    x.write(str(tmp_path / "a"), workers=1, progress=False)
    Expansion(small_ratings, red, "movielens-1b", seed=9).write(
        str(tmp_path / "b"), workers=2, progress=False)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    for f in _files(tmp_path / "a"):
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f
    meta = read_metadata(str(tmp_path / "a"))
    assert meta["num_interactions"] == x.num_interactions
    assert meta["options"]["seed"] == 9 and len(meta["reduced"]["matrix"]) == 4


def test_read_back_equals_blocks(small_ratings, tmp_path):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "coherent", seed=1)
    x.write(str(tmp_path / "o"), max_shard_interactions=int(x.counts.max()), progress=False)
    got = [np.concatenate(c) for c in zip(*read_expansion(str(tmp_path / "o")))]
    want = x.interactions(0, x.num_interactions)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert got[0].dtype == np.int64


def test_existing_output_refused_and_failed_write_leaves_nothing(small_ratings, tmp_path):
    x = Expansion(small_ratings, reduce_ratings(small_ratings, (4, 3)), "paper")
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError, match="already exists"):
        x.write(str(tmp_path / "exists"), progress=False)

    def boom(spec):
        raise RuntimeError("disk full")
    x.shard_blocks = boom
    with pytest.raises(RuntimeError):
        x.write(str(tmp_path / "new"), progress=False)
    assert os.listdir(tmp_path) == ["exists"]


@pytest.fixture
def real_csv(real_ratings):
    return real_ratings.source


def test_cli_expand_with_report_and_stats(real_csv, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["expand", "--source", real_csv, "--factors", "4x4", "--preset", "coherent",
               "--seed", "3", "--out", str(out), "--workers", "2", "--report", "--quiet"])
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("expanded ") and "interactions" in line
    stats = json.load(open(out / "report" / "statistics.json"))
    assert stats["measured"]["num_interactions"] == stats["num_interactions"]
    assert os.path.getsize(out / "report" / "sums.png") > 10_000
    assert os.path.getsize(out / "report" / "degrees.png") > 10_000
    rc = main(["stats", "--source", real_csv, "--factors", "4x4", "--preset", "coherent",
               "--seed", "3", "--measure", str(out)])
    assert rc == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["measured"]["num_interactions"] == stats["num_interactions"]
    assert stats["measured"]["row_sums_max_rel_error"] < 0.5  # sampled: close, not equal


def test_cli_stats_paper_exact(real_csv, tmp_path, capsys):
    out = str(tmp_path / "p")
    args = ["--source", real_csv, "--factors", "2x2", "--preset", "paper"]
    assert main(["expand", *args, "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["stats", *args, "--measure", out]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["measured"]["row_sums_max_rel_error"] < 1e-5
    assert stats["measured"]["column_sums_max_rel_error"] < 1e-5


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fractal_tfds.cli", *args],
                          capture_output=True, text=True)


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    ("1,1,4.0,100\n1,2,nan,101\n", "line 2"),
])
def test_cli_bad_files(tmp_path, content, needle):
    f = tmp_path / "ratings.csv"
    f.write_text(content)
    out = tmp_path / "out"
    r = _run_cli("expand", "--source", str(f), "--factors", "1x1", "--out", str(out))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0].lower() and str(f) in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("factors,needle", [("0x4", "bad factors"), ("16x", "bad factors"),
                                             ("700x4", "larger than r")])
def test_cli_bad_factors(real_csv, tmp_path, factors, needle):
    out = tmp_path / "out"
    r = _run_cli("expand", "--source", real_csv, "--factors", factors, "--out", str(out))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0].lower() and "--factors" in err[0], err
    assert not out.exists()


def test_cli_unreadable_and_existing_output(tmp_path):
    r = _run_cli("expand", "--source", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "missing.csv" in r.stderr and len(r.stderr.splitlines()) == 1
    (tmp_path / "o").mkdir()
    r = _run_cli("expand", "--source", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "already exists" in r.stderr
