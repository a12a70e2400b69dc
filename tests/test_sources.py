"""Tests for fractal_tfds.sources: loading MovieLens releases and ratings files."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fractal_tfds import sources
from fractal_tfds.sources import MOVIELENS, MovieLensEntry, SourceError, load_ratings

FIXTURES = Path(__file__).parent / "fixtures"
HEADER_CSV = FIXTURES / "ratings_header.csv"
TAB_DATA = FIXTURES / "seven_ratings_tab.tsv"
COLON_DAT = FIXTURES / "seven_ratings_colons.txt"
STRING_IDS = FIXTURES / "string_ids.csv"

# The fixtures hold the same 7 ratings (the csv has half stars, the others integers).
USERS = [1, 2, 3, 7]
ITEMS = [10, 20, 30]
DENSE_CSV = np.array(
    [
        [4.0, 0.0, 1.0],  # user 1
        [0.0, 0.0, 3.0],  # user 2
        [2.5, 5.0, 0.0],  # user 3
        [3.5, 2.0, 0.0],  # user 7
    ]
)
TIMES_CSV = np.array([100, 101, 104, 103, 102, 105, 104])  # in CSR order

REAL_NNZ, REAL_USERS, REAL_ITEMS = 100_836, 610, 9_724
REAL_ZIP_SHA256 = "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"


def _real_data_dir() -> Path:
    """The ml-latest-small folder named by $FRACTAL_TFDS_TEST_DATA (skips, or fails on CI)."""
    value = os.environ.get("FRACTAL_TFDS_TEST_DATA")
    if not value:
        message = (
            "set FRACTAL_TFDS_TEST_DATA to the ml-latest-small folder (ratings.csv and "
            "ml-latest-small.zip), e.g. shared/data/movielens-latest-small"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(value)
    if not (folder / "ratings.csv").is_file():
        pytest.fail(f"FRACTAL_TFDS_TEST_DATA={value} has no ratings.csv")
    return folder


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the user's data folder or writes to ~/.cache."""
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "default-cache"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def _check_structure(r) -> None:
    m = r.matrix
    assert m.format == "csr"
    assert m.dtype == np.float64
    assert r.raw_values.dtype == np.float32
    assert r.raw_values.shape == (m.nnz,)
    for row in range(m.shape[0]):
        cols = m.indices[m.indptr[row] : m.indptr[row + 1]]
        assert np.all(np.diff(cols) > 0), "column indices must be sorted and unique"
    assert np.all(np.diff(m.indptr) > 0), "every user keeps at least one rating"
    assert np.all(np.bincount(m.indices, minlength=m.shape[1]) > 0), "every item is rated"


# --------------------------------------------------------------------------------------------
# Small fixtures: formats, columns, ids.
# --------------------------------------------------------------------------------------------


def test_comma_with_header():
    r = load_ratings(HEADER_CSV)
    _check_structure(r)
    assert r.user_ids.tolist() == USERS and r.user_ids.dtype == np.int64
    assert r.item_ids.tolist() == ITEMS and r.item_ids.dtype == np.int64
    np.testing.assert_array_equal(r.matrix.toarray(), DENSE_CSV)
    np.testing.assert_array_equal(r.raw_values, r.matrix.data.astype(np.float32))
    np.testing.assert_array_equal(r.timestamps, TIMES_CSV)
    assert r.timestamps.dtype == np.int64
    assert r.checksum == _sha256(HEADER_CSV)
    assert r.source == str(HEADER_CSV)
    assert r.preprocessing == "raw"
    assert r.filters == ()


@pytest.mark.parametrize("path", [TAB_DATA, COLON_DAT], ids=["tab", "double-colon"])
def test_tab_and_double_colon_without_header(path):
    r = load_ratings(path)
    _check_structure(r)
    assert r.user_ids.tolist() == USERS and r.item_ids.tolist() == ITEMS
    np.testing.assert_array_equal(r.matrix.toarray(), np.floor(DENSE_CSV))
    np.testing.assert_array_equal(r.timestamps, TIMES_CSV)
    assert r.checksum == _sha256(path)


def test_gzip(tmp_path):
    gz = tmp_path / "ratings.csv.gz"
    gz.write_bytes(gzip.compress(HEADER_CSV.read_bytes()))
    r = load_ratings(gz)
    np.testing.assert_array_equal(r.matrix.toarray(), DENSE_CSV)
    assert r.checksum == _sha256(gz)  # of the file as stored, not decompressed
    dat = tmp_path / "ratings.dat.gz"
    dat.write_bytes(gzip.compress(COLON_DAT.read_bytes()))
    np.testing.assert_array_equal(load_ratings(dat).matrix.toarray(), np.floor(DENSE_CSV))


def test_zip_file_as_path(tmp_path):
    archive = tmp_path / "some.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(HEADER_CSV, "folder/ratings.csv")
        zf.writestr("folder/movies.csv", "movieId,title\n10,x\n")
    r = load_ratings(archive)
    np.testing.assert_array_equal(r.matrix.toarray(), DENSE_CSV)
    assert r.checksum == _sha256(archive)


def test_columns_by_name_and_position():
    by_name = load_ratings(
        HEADER_CSV,
        columns={"user": "movieId", "item": "userId", "rating": "rating", "timestamp": "timestamp"},
    )
    assert by_name.user_ids.tolist() == ITEMS
    np.testing.assert_array_equal(by_name.matrix.toarray(), DENSE_CSV.T)
    by_position = load_ratings(HEADER_CSV, columns={"user": 1, "item": 0, "rating": 2})
    np.testing.assert_array_equal(by_position.matrix.toarray(), DENSE_CSV.T)
    assert by_position.timestamps is None
    implicit = load_ratings(TAB_DATA, columns={"user": 0, "item": 1})
    np.testing.assert_array_equal(implicit.matrix.toarray(), DENSE_CSV > 0)
    np.testing.assert_array_equal(implicit.raw_values, np.ones(7, np.float32))
    assert implicit.timestamps is None


def test_two_column_file_is_implicit(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "5\t1\n5\t2\n6\t2\n")
    r = load_ratings(path)
    np.testing.assert_array_equal(r.matrix.toarray(), [[1.0, 1.0], [0.0, 1.0]])
    assert r.timestamps is None


def test_string_ids():
    r = load_ratings(STRING_IDS)
    assert r.user_ids.tolist() == ["alice", "bob", "carol"]
    assert r.item_ids.tolist() == ["alien", "brazil", "dune"]
    assert r.user_ids.dtype.kind == "U" and r.item_ids.dtype.kind == "U"
    np.testing.assert_array_equal(r.matrix.toarray(), [[4, 0, 5], [0, 0, 3], [0, 2, 0]])
    np.testing.assert_array_equal(r.timestamps, [1002, 1000, 1001, 1003])


def test_mixed_id_types(tmp_path):
    path = _write(tmp_path / "r.csv", "7,b,1\n3,a,2\n")
    r = load_ratings(path)
    assert r.user_ids.dtype == np.int64 and r.user_ids.tolist() == [3, 7]
    assert r.item_ids.tolist() == ["a", "b"]


def test_explicit_sep_and_header(tmp_path):
    path = _write(tmp_path / "r.txt", "u;i;r\n1;2;3\n")
    r = load_ratings(path, sep=";", header=True)
    assert r.nnz == 1 and r.matrix.data.tolist() == [3.0]
    # header=False makes the first line data, whose rating 'r' is not a number.
    with pytest.raises(SourceError, match=r"line 1: rating 'r' is not a number"):
        load_ratings(path, header=False)


def test_bom_pipe_and_multichar_separators(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfuserId,movieId,rating\n1,2,3\n")
    r = load_ratings(bom, columns={"user": "userId", "item": "movieId", "rating": "rating"})
    assert r.matrix.data.tolist() == [3.0]
    pipe = _write(tmp_path / "r.psv", "1|2|3\n1|3|4\n")
    assert load_ratings(pipe).matrix.data.tolist() == [3.0, 4.0]
    multi = _write(tmp_path / "r.txt", "1\u00a72\u00a73\n2\u00a72\u00a75\n")
    assert load_ratings(multi, sep="\u00a7").matrix.data.tolist() == [3.0, 5.0]
    with pytest.raises(SourceError, match="cannot detect the field separator"):
        load_ratings(_write(tmp_path / "one.txt", "1 2 3\n"))


def test_blank_lines_crlf_and_line_numbers(tmp_path):
    text = "userId,movieId,rating\r\n1,2,3\r\n\r\n2,3,4\r\n2,4,oops\r\n"
    path = _write(tmp_path / "r.csv", text)
    with pytest.raises(SourceError, match=r"r\.csv: line 5: rating 'oops' is not a number"):
        load_ratings(path)
    ok = _write(tmp_path / "ok.csv", "\n" + text.replace("oops", "5"))
    assert load_ratings(ok).nnz == 3


# --------------------------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SourceError, match="not found.*nope.csv"):
        load_ratings(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="is a folder"):
        load_ratings(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "userId,movieId,rating\n"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path / "empty.csv", text)
    with pytest.raises(SourceError, match=r"empty\.csv.*(empty|no data rows)"):
        load_ratings(path)


def test_non_numeric_rating_and_timestamp(tmp_path):
    bad_rating = _write(tmp_path / "a.csv", "u,i,r,t\n1,1,4,10\n1,2,x,11\n")
    with pytest.raises(SourceError, match=r"a\.csv: line 3: rating 'x' is not a number"):
        load_ratings(bad_rating)
    bad_time = _write(tmp_path / "b.tsv", "1\t1\t4\t10\n1\t2\t3\tsoon\n")
    with pytest.raises(SourceError, match=r"b\.tsv: line 2: timestamp 'soon' is not an integer"):
        load_ratings(bad_time)
    empty_rating = _write(tmp_path / "c.csv", "1,1,4\n1,2,\n")
    with pytest.raises(SourceError, match=r"c\.csv: line 2: rating '' is not a number"):
        load_ratings(empty_rating)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_nan_or_inf_rating(tmp_path, value):
    path = _write(tmp_path / "r.csv", f"u,i,r\n1,1,4\n2,1,3\n1,2,{value}\n")
    with pytest.raises(SourceError, match=r"r\.csv: line 4: rating is .*(nan|inf)"):
        load_ratings(path)


def test_wrong_column_count(tmp_path):
    path = _write(tmp_path / "r.csv", "u,i,r,t\n1,1,4,10\n1,2,3\n")
    with pytest.raises(SourceError, match=r"r\.csv: line 3 has 3 columns, expected 4"):
        load_ratings(path)
    dat = _write(tmp_path / "r.dat", "1::1::4::10\n1::2::3::11::12\n")
    with pytest.raises(SourceError, match=r"r\.dat: line 2 has 5 columns, expected 4"):
        load_ratings(dat)


def test_unknown_column_name_lists_available():
    with pytest.raises(SourceError, match="unknown column 'user_id'.*'userId', 'movieId'"):
        load_ratings(HEADER_CSV, columns={"user": "user_id", "item": "movieId"})
    with pytest.raises(SourceError, match="out of range"):
        load_ratings(HEADER_CSV, columns={"user": 0, "item": 9})
    with pytest.raises(SourceError, match="no header"):
        load_ratings(TAB_DATA, columns={"user": "userId", "item": "movieId"}, header=False)
    with pytest.raises(ValueError, match="user"):
        load_ratings(HEADER_CSV, columns={"item": 1})


def test_unknown_movielens_name_lists_known():
    with pytest.raises(SourceError, match="unknown MovieLens name 'ml-5m'.*ml-100k.*ml-25m"):
        load_ratings("ml-5m")


def test_bad_arguments():
    with pytest.raises(ValueError, match="preprocessing"):
        load_ratings(HEADER_CSV, preprocessing="zscore")
    with pytest.raises(ValueError, match="duplicates"):
        load_ratings(HEADER_CSV, duplicates="first")
    with pytest.raises(ValueError, match="conflicts"):
        load_ratings(HEADER_CSV, implicit=True, preprocessing="paper")
    with pytest.raises(ValueError, match="min_user_ratings"):
        load_ratings(HEADER_CSV, min_user_ratings=-1)


# --------------------------------------------------------------------------------------------
# Duplicates.
# --------------------------------------------------------------------------------------------

DUPLICATED = "u,i,r,t\n1,1,1,10\n2,1,2,20\n1,1,5,5\n1,2,3,30\n1,1,3,7\n"


def test_duplicates_error_names_pair_and_lines(tmp_path):
    path = _write(tmp_path / "dup.csv", DUPLICATED)
    with pytest.raises(SourceError, match=r"dup\.csv: duplicate .*user 1, item 1 on lines 2 and 4"):
        load_ratings(path)


@pytest.mark.parametrize(
    "mode, value, timestamp",
    [("last", 3.0, 7), ("mean", 3.0, 10), ("max", 5.0, 10)],
)
def test_duplicates_modes(tmp_path, mode, value, timestamp):
    path = _write(tmp_path / "dup.csv", DUPLICATED)
    r = load_ratings(path, duplicates=mode)
    _check_structure(r)
    assert r.nnz == 3
    assert r.matrix[0, 0] == value and r.raw_values[0] == value
    assert r.timestamps[0] == timestamp
    np.testing.assert_array_equal(r.timestamps[1:], [30, 20])
    assert r.filters == (
        {"name": f"duplicates:{mode}", "rows_removed": 2, "users_removed": 0, "items_removed": 0},
    )


def test_duplicates_mode_without_duplicates_records_zero():
    r = load_ratings(HEADER_CSV, duplicates="last")
    assert r.filters[0]["name"] == "duplicates:last" and r.filters[0]["rows_removed"] == 0
    np.testing.assert_array_equal(r.matrix.toarray(), DENSE_CSV)


def test_unsorted_input_is_sorted(tmp_path):
    path = _write(tmp_path / "r.csv", "3,2,1,1\n1,9,2,2\n3,1,3,3\n1,2,4,4\n")
    r = load_ratings(path)
    assert r.item_ids.tolist() == [1, 2, 9]
    np.testing.assert_array_equal(r.matrix.toarray(), [[0, 4, 2], [3, 1, 0]])
    np.testing.assert_array_equal(r.timestamps, [4, 2, 3, 1])
    np.testing.assert_array_equal(r.raw_values, [4, 2, 3, 1])


# --------------------------------------------------------------------------------------------
# Filters.
# --------------------------------------------------------------------------------------------

# user 1: 4 ratings at 2 distinct times; user 2: 3 ratings at 3 times; user 3: 1 rating.
# item 10 rated by 1, 2, 3; item 20 by 1, 2; item 30 by 1, 2; item 40 by 1.
FILTERED = (
    "1,10,5,100\n1,20,4,100\n1,30,3,200\n1,40,2,200\n"
    "2,10,1,100\n2,20,2,200\n2,30,3,300\n"
    "3,10,4,100\n"
)


def test_filters_in_order_with_counts(tmp_path, caplog):
    path = _write(tmp_path / "f.csv", FILTERED)
    with caplog.at_level("INFO", logger="fractal_tfds.sources"):
        r = load_ratings(path, min_distinct_timestamps=2, min_user_ratings=3, min_item_ratings=2)
    names = ["min_distinct_timestamps", "min_user_ratings", "min_item_ratings"]
    assert [f["name"] for f in r.filters] == names
    assert [f["threshold"] for f in r.filters] == [2, 3, 2]
    counts = [(f["rows_removed"], f["users_removed"], f["items_removed"]) for f in r.filters]
    # user 3 has one timestamp; nobody has < 3 ratings then; item 40 has a single rating.
    assert counts == [(1, 1, 0), (0, 0, 0), (1, 0, 1)]
    assert r.user_ids.tolist() == [1, 2] and r.item_ids.tolist() == [10, 20, 30]
    assert r.nnz == 6
    for name in names:
        assert f"filter {name}" in caplog.text


def test_filter_user_then_item(tmp_path):
    path = _write(tmp_path / "f.csv", FILTERED)
    r = load_ratings(path, min_user_ratings=2, min_item_ratings=2)
    # user 3 (1 rating) goes first; then item 40 (1 rating) goes; item 10 keeps 2 ratings.
    assert [f["name"] for f in r.filters] == ["min_user_ratings", "min_item_ratings"]
    assert r.filters[0] == {
        "name": "min_user_ratings",
        "threshold": 2,
        "rows_removed": 1,
        "users_removed": 1,
        "items_removed": 0,
    }
    assert r.filters[1] == {
        "name": "min_item_ratings",
        "threshold": 2,
        "rows_removed": 1,
        "users_removed": 0,
        "items_removed": 1,
    }
    _check_structure(r)
    assert r.user_ids.tolist() == [1, 2] and r.item_ids.tolist() == [10, 20, 30]
    assert r.nnz == 6


def test_min_distinct_timestamps(tmp_path):
    path = _write(tmp_path / "f.csv", FILTERED)
    r = load_ratings(path, min_distinct_timestamps=3)
    assert r.user_ids.tolist() == [2] and r.item_ids.tolist() == [10, 20, 30]
    assert r.filters == (
        {
            "name": "min_distinct_timestamps",
            "threshold": 3,
            "rows_removed": 5,
            "users_removed": 2,
            "items_removed": 1,
        },
    )
    np.testing.assert_array_equal(r.timestamps, [100, 200, 300])


def test_filters_need_timestamps_and_leave_something(tmp_path):
    with pytest.raises(SourceError, match="needs timestamps"):
        load_ratings(HEADER_CSV, columns={"user": 0, "item": 1}, min_distinct_timestamps=2)
    with pytest.raises(SourceError, match="filtered out"):
        load_ratings(HEADER_CSV, min_user_ratings=100)


# --------------------------------------------------------------------------------------------
# Preprocessing.
# --------------------------------------------------------------------------------------------


def test_preprocessing_paper_keeps_explicit_zeros(tmp_path):
    path = _write(tmp_path / "p.csv", "1,1,1\n1,2,3\n2,1,5\n2,2,3\n")
    r = load_ratings(path, preprocessing="paper")
    assert r.preprocessing == "paper"
    assert r.nnz == 4  # the two ratings equal to the mean become stored zeros
    np.testing.assert_allclose(r.matrix.data, [-1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(r.raw_values, [1, 3, 5, 3])
    assert np.count_nonzero(r.matrix.data == 0) == 2


def test_preprocessing_ranges():
    raw = load_ratings(HEADER_CSV)
    paper = load_ratings(HEADER_CSV, preprocessing="paper")
    assert paper.matrix.data.min() >= -1.0 and paper.matrix.data.max() <= 1.0
    assert np.abs(paper.matrix.data).max() == pytest.approx(1.0)
    centred = raw.matrix.data - raw.matrix.data.mean()
    np.testing.assert_allclose(paper.matrix.data, centred / np.abs(centred).max())
    np.testing.assert_array_equal(paper.raw_values, raw.raw_values)
    for kwargs in ({"preprocessing": "implicit"}, {"implicit": True}):
        imp = load_ratings(HEADER_CSV, **kwargs)
        assert imp.preprocessing == "implicit"
        np.testing.assert_array_equal(imp.matrix.data, np.ones(7))
        np.testing.assert_array_equal(imp.raw_values, raw.raw_values)


# --------------------------------------------------------------------------------------------
# MovieLens resolution and downloads (local zips only, never the network).
# --------------------------------------------------------------------------------------------


def _fake_release(tmp_path: Path, monkeypatch, name: str = "ml-fake") -> tuple[Path, str]:
    """Registers a MovieLens-like release served from a local file:// URL."""
    served = tmp_path / "served"
    served.mkdir()
    archive = served / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(COLON_DAT, f"{name}-folder/ratings.dat")
        zf.writestr(f"{name}-folder/README.txt", "fake\n")
    digest = _sha256(archive)
    entry = MovieLensEntry(archive.as_uri(), digest, f"{name}-folder/ratings.dat", "::", False)
    monkeypatch.setitem(MOVIELENS, name, entry)
    return archive, digest


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    archive, digest = _fake_release(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    r = load_ratings("ml-fake", cache_dir=cache)
    np.testing.assert_array_equal(r.matrix.toarray(), np.floor(DENSE_CSV))
    assert r.checksum == digest and r.source == "ml-fake"
    assert (cache / "ml-fake.zip").is_file()
    assert [p.name for p in cache.iterdir()] == ["ml-fake.zip"]
    archive.unlink()  # the cached copy is used from now on
    again = load_ratings("ml-fake", cache_dir=cache, download=False)
    np.testing.assert_array_equal(again.matrix.toarray(), r.matrix.toarray())


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
    _fake_release(tmp_path, monkeypatch)
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "env-cache"))
    assert sources.default_cache_dir() == tmp_path / "env-cache"
    load_ratings("ml-fake")
    assert (tmp_path / "env-cache" / "ml-fake.zip").is_file()


def test_download_checksum_mismatch(tmp_path, monkeypatch):
    archive, digest = _fake_release(tmp_path, monkeypatch)
    wrong = "0" * 64
    monkeypatch.setitem(MOVIELENS, "ml-fake", MOVIELENS["ml-fake"]._replace(sha256=wrong))
    cache = tmp_path / "cache"
    with pytest.raises(
        SourceError, match=f"checksum mismatch.*expected sha256 {wrong}, got {digest}"
    ):
        load_ratings("ml-fake", cache_dir=cache)
    assert not any(cache.iterdir()), "no partial or unverified file is left behind"


def test_download_failure_explains_data_dir(tmp_path, monkeypatch):
    _fake_release(tmp_path, monkeypatch)
    missing = (tmp_path / "nowhere.zip").as_uri()
    monkeypatch.setitem(MOVIELENS, "ml-fake", MOVIELENS["ml-fake"]._replace(url=missing))
    with pytest.raises(SourceError, match="download of .* failed.*data_dir.*FRACTAL_TFDS_DATA_DIR"):
        load_ratings("ml-fake", cache_dir=tmp_path / "cache")
    with pytest.raises(SourceError, match="not found locally.*download=False.*FRACTAL_TFDS"):
        load_ratings("ml-fake", cache_dir=tmp_path / "cache", download=False)


def test_download_file_directly(tmp_path):
    src = _write(tmp_path / "payload.bin", "hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    out = sources.download_file(src.as_uri(), tmp_path / "sub" / "copy.bin", digest)
    assert out.read_bytes() == b"hello"
    with pytest.raises(SourceError, match="checksum mismatch"):
        sources.download_file(src.as_uri(), tmp_path / "sub" / "bad.bin", "f" * 64)
    assert not (tmp_path / "sub" / "bad.bin").exists()


def test_data_dir_zip_checksum_mismatch_names_file(tmp_path, monkeypatch):
    archive, digest = _fake_release(tmp_path, monkeypatch)
    local = tmp_path / "local"
    local.mkdir()
    tampered = local / "ml-fake.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        zf.write(TAB_DATA, "ml-fake-folder/ratings.dat")
    actual = _sha256(tampered)
    with pytest.raises(SourceError) as info:
        load_ratings("ml-fake", data_dir=local, download=False)
    message = str(info.value)
    assert str(tampered) in message and digest in message and actual in message


def test_data_dir_from_env_and_extracted_layouts(tmp_path, monkeypatch):
    _fake_release(tmp_path, monkeypatch)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(COLON_DAT, flat / "ratings.dat")
    nested = tmp_path / "nested" / "ml-fake-folder"
    nested.mkdir(parents=True)
    shutil.copy(COLON_DAT, nested / "ratings.dat")
    for folder in (flat, nested.parent):
        monkeypatch.setenv(sources.DATA_DIR_ENV, str(folder))
        r = load_ratings("ml-fake", download=False)
        np.testing.assert_array_equal(r.matrix.toarray(), np.floor(DENSE_CSV))
        assert r.checksum == _sha256(COLON_DAT)


def test_registry_is_complete():
    assert set(MOVIELENS) == {"ml-latest-small", "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m"}
    for name, entry in MOVIELENS.items():
        assert entry.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
    assert MOVIELENS["ml-10m"].member == "ml-10M100K/ratings.dat"
    assert MOVIELENS["ml-latest-small"].sha256 == REAL_ZIP_SHA256


# --------------------------------------------------------------------------------------------
# Real data: ml-latest-small.
# --------------------------------------------------------------------------------------------


def _check_real(r) -> None:
    _check_structure(r)
    assert (r.num_users, r.num_items, r.nnz) == (REAL_USERS, REAL_ITEMS, REAL_NNZ)
    assert r.raw_values.min() == 0.5 and r.raw_values.max() == 5.0
    assert r.timestamps.min() == 828124615 and r.timestamps.max() == 1537799250
    assert r.user_ids[0] == 1 and r.user_ids[-1] == 610


def test_real_file_path():
    folder = _real_data_dir()
    start = time.perf_counter()
    r = load_ratings(folder / "ratings.csv")
    elapsed = time.perf_counter() - start
    _check_real(r)
    assert r.checksum == _sha256(folder / "ratings.csv")
    assert r.matrix[0, np.searchsorted(r.item_ids, 1)] == 4.0  # first line: 1,1,4.0,964982703
    assert elapsed < 5.0, f"ml-latest-small took {elapsed:.2f}s to load"


def test_real_by_name_from_zip():
    folder = _real_data_dir()
    if not (folder / "ml-latest-small.zip").is_file():
        pytest.fail(f"{folder} has no ml-latest-small.zip")
    r = load_ratings("ml-latest-small", data_dir=folder, download=False)
    _check_real(r)
    assert r.checksum == REAL_ZIP_SHA256


def test_real_by_name_from_extracted_files(tmp_path):
    folder = _real_data_dir()
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "ratings.csv").symlink_to(folder / "ratings.csv")
    nested = tmp_path / "nested" / "ml-latest-small"
    nested.mkdir(parents=True)
    (nested / "ratings.csv").symlink_to(folder / "ratings.csv")
    for data_dir in (flat, nested.parent):
        r = load_ratings("ml-latest-small", data_dir=data_dir, download=False)
        _check_real(r)
        assert r.checksum == _sha256(folder / "ratings.csv")


def test_real_filters_and_paper():
    folder = _real_data_dir()
    r = load_ratings(
        folder / "ratings.csv",
        preprocessing="paper",
        min_user_ratings=20,
        min_item_ratings=10,
        duplicates="last",
    )
    _check_structure(r)
    assert r.filters[0]["rows_removed"] == 0  # no duplicates in ml-latest-small
    assert r.filters[1]["users_removed"] == 0  # every user has at least 20 ratings
    removed = sum(f["rows_removed"] for f in r.filters)
    assert r.nnz == REAL_NNZ - removed
    assert r.num_items == REAL_ITEMS - r.filters[2]["items_removed"]
    assert np.abs(r.matrix.data).max() == pytest.approx(1.0)
    assert -1.0 <= r.matrix.data.min() and r.matrix.data.max() <= 1.0
    assert abs(r.matrix.data.mean()) < 0.1
