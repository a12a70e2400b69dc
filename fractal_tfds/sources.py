"""Loading real rating matrices: MovieLens releases and delimited ratings files.

The entry point is `load_ratings`, which turns a MovieLens name (``"ml-20m"``) or a path to a
ratings file into a `fractal_tfds.ratings.Ratings`:

* MovieLens archives are looked up in a local data folder (``data_dir`` or the environment
  variable ``FRACTAL_TFDS_DATA_DIR``), then in the download cache (``cache_dir`` or
  ``FRACTAL_TFDS_CACHE_DIR``, default ``~/.cache/fractal_tfds``), and are downloaded from
  GroupLens as a last resort. Every archive is checked against its pinned SHA-256.
* Files may be comma, tab, semicolon, pipe or ``::`` separated, with or without a header line,
  and gzip-compressed. Parsing is done by ``pyarrow.csv``; everything after it is vectorized
  numpy, so memory stays proportional to the number of ratings (ml-20m included).
* Problems with the data raise `SourceError` (a `ValueError`) naming the file and, where it
  applies, the 1-based line number.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import scipy.sparse as sp

from fractal_tfds.ratings import Ratings

__all__ = [
    "MOVIELENS",
    "MovieLensEntry",
    "SourceError",
    "default_cache_dir",
    "download_file",
    "load_ratings",
    "resolve_movielens",
]

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "FRACTAL_TFDS_DATA_DIR"
CACHE_DIR_ENV = "FRACTAL_TFDS_CACHE_DIR"

_BASE_URL = "https://files.grouplens.org/datasets/movielens/"


class SourceError(ValueError):
    """A ratings source is missing, unreadable, malformed or fails verification."""


class MovieLensEntry(NamedTuple):
    """Where a MovieLens release lives and how its ratings file is laid out.

    Attributes:
      url: download address of the official zip archive.
      sha256: hex SHA-256 digest of that archive.
      member: path of the ratings file inside the archive.
      sep: field separator of the ratings file.
      has_header: whether the ratings file starts with a header line.
    """

    url: str
    sha256: str
    member: str
    sep: str
    has_header: bool


# Digests as published in TensorFlow Datasets' url_checksums/movielens.txt; ml-10m (which TFDS
# does not ship) matches the 65,566,137-byte archive whose MD5 GroupLens publishes
# (ce571fd55effeba0271552578f2648bd).
MOVIELENS: dict[str, MovieLensEntry] = {
    "ml-latest-small": MovieLensEntry(
        _BASE_URL + "ml-latest-small.zip",
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        "ml-latest-small/ratings.csv",
        ",",
        True,
    ),
    "ml-100k": MovieLensEntry(
        _BASE_URL + "ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        "ml-100k/u.data",
        "\t",
        False,
    ),
    "ml-1m": MovieLensEntry(
        _BASE_URL + "ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        "ml-1m/ratings.dat",
        "::",
        False,
    ),
    "ml-10m": MovieLensEntry(
        _BASE_URL + "ml-10m.zip",
        "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
        "ml-10M100K/ratings.dat",
        "::",
        False,
    ),
    "ml-20m": MovieLensEntry(
        _BASE_URL + "ml-20m.zip",
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        "ml-20m/ratings.csv",
        ",",
        True,
    ),
    "ml-25m": MovieLensEntry(
        _BASE_URL + "ml-25m.zip",
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        "ml-25m/ratings.csv",
        ",",
        True,
    ),
}

_FIELDS = ("user", "item", "rating", "timestamp")
_PREPROCESSING = ("raw", "paper", "implicit")
_DUPLICATES = ("error", "last", "mean", "max")
# Candidate delimiters, in the order they are tried on the first line.
_DELIMITERS = ("::", "\t", ",", ";", "|")
# Multi-character separators are rewritten to this byte before parsing.
_SUBSTITUTE = "\x1f"
_CHUNK = 1 << 26

_NON_SPACE = re.compile(rb"\S")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# RE2 patterns (pyarrow.compute) for diagnosing values that failed to convert.
_RE2_FLOAT = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:nan|inf|infinity))\s*$"
_RE2_INT = r"^\s*[+-]?\d+\s*$"


# --------------------------------------------------------------------------------------------
# Locating MovieLens archives.
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Returns the download cache folder: ``$FRACTAL_TFDS_CACHE_DIR`` or ~/.cache/fractal_tfds."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fractal_tfds"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike, sha256: str | None = None, *, progress: bool = False
) -> Path:
    """Downloads `url` to `dest` atomically, checking its SHA-256 on the way.

    The bytes go to a temporary file next to `dest`, which is renamed into place only once the
    digest matches, so an interrupted or corrupt download never leaves a file at `dest`. Any
    URL that `urllib` opens works, ``file://`` included.

    Args:
      url: address to fetch.
      dest: final path of the file; its folder is created if needed.
      sha256: expected hex digest; None skips the check.
      progress: show a tqdm progress bar.

    Returns:
      `dest` as a Path.

    Raises:
      SourceError: the download failed or the digest does not match.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise SourceError(f"cannot write to the download folder {dest.parent}: {e}") from e
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    desc=f"downloading {dest.name}",
                )
            try:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise SourceError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                "the download is corrupt or the file changed upstream"
            )
        os.replace(tmp, dest)
    except (OSError, urllib.error.URLError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, SourceError):
            raise
        raise SourceError(f"download of {url} failed: {e}") from e
    return dest


def _verified_zip(path: Path, entry: MovieLensEntry) -> str:
    """Returns the digest of the zip at `path`, raising if it is not the pinned one."""
    try:
        actual = _sha256_file(path)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e}") from e
    if actual != entry.sha256:
        raise SourceError(
            f"checksum mismatch for {path}: expected sha256 {entry.sha256}, got {actual}; "
            f"replace it with the official archive from {entry.url}"
        )
    return actual


def resolve_movielens(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = False,
) -> tuple[Path, str | None]:
    """Finds (or downloads) the ratings of a MovieLens release.

    Resolution order:
      1. `data_dir`, else ``$FRACTAL_TFDS_DATA_DIR``: the official zip (``<dir>/ml-20m.zip``,
         checksum verified), else the extracted ratings file as ``<dir>/<basename>``,
         ``<dir>/<zip folder>/<basename>`` or ``<dir>/<name>/<basename>`` (not verifiable).
      2. `cache_dir`, else ``$FRACTAL_TFDS_CACHE_DIR`` or ~/.cache/fractal_tfds: a previously
         downloaded zip, verified again.
      3. If `download`, the zip is downloaded into the cache folder and verified.

    Args:
      name: a key of `MOVIELENS`.
      data_dir: local folder holding the zip or the extracted files.
      cache_dir: download cache folder.
      download: whether to download when nothing local is found.
      progress: show a progress bar while downloading.

    Returns:
      (path, member): the zip and the ratings member inside it, or (ratings file, None).

    Raises:
      SourceError: unknown name, checksum mismatch, or nothing found and no download.
    """
    if name not in MOVIELENS:
        raise SourceError(
            f"unknown MovieLens name {name!r}; known names: {', '.join(MOVIELENS)} "
            "(or pass the path of a ratings file)"
        )
    entry = MOVIELENS[name]
    zip_name = entry.url.rsplit("/", 1)[-1]
    basename = entry.member.rsplit("/", 1)[-1]
    looked: list[str] = []

    local = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if local is not None:
        folder = Path(local).expanduser()
        zip_path = folder / zip_name
        if zip_path.is_file():
            _verified_zip(zip_path, entry)
            return zip_path, entry.member
        candidates = [folder / basename, folder / entry.member, folder / name / basename]
        for candidate in candidates:
            if candidate.is_file():
                return candidate, None
        looked.append(f"{folder} (no {zip_name} and no extracted {basename})")
        logger.info("%s: nothing in %s, trying the cache", name, folder)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = cache / zip_name
    if cached.is_file():
        try:
            _verified_zip(cached, entry)
            return cached, entry.member
        except SourceError:
            if not download:
                raise
            logger.warning("%s does not match its checksum; downloading it again", cached)
    looked.append(str(cached))

    hint = (
        f"download {entry.url} yourself and pass data_dir=<folder holding {zip_name}> "
        f"or set {DATA_DIR_ENV} to that folder"
    )
    if not download:
        raise SourceError(
            f"MovieLens {name!r} not found locally (looked in {'; '.join(looked)}) and "
            f"download=False; {hint}"
        )
    logger.info("downloading %s to %s", entry.url, cached)
    try:
        download_file(entry.url, cached, entry.sha256, progress=progress)
    except SourceError as e:
        raise SourceError(f"{e}; {hint}") from e
    return cached, entry.member


# --------------------------------------------------------------------------------------------
# Reading bytes.
# --------------------------------------------------------------------------------------------


def _maybe_gunzip(raw: bytes, where: str) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise SourceError(f"{where}: cannot decompress gzip data: {e}") from e


def _read_zip_member(path: Path, member: str | None) -> tuple[bytes, str]:
    """Reads `member` (or the only ratings-like member) of the zip at `path`."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if member is None:
                found = [n for n in names if n.rsplit("/", 1)[-1] in _RATINGS_BASENAMES]
                if len(found) != 1:
                    raise SourceError(
                        f"{path}: cannot tell which member holds the ratings "
                        f"(candidates: {found or names})"
                    )
                member = found[0]
            if member not in names:
                raise SourceError(f"{path}: the archive has no member {member!r}")
            data = zf.read(member)
    except (OSError, zipfile.BadZipFile) as e:
        raise SourceError(f"cannot read the zip archive {path}: {e}") from e
    return _maybe_gunzip(data, f"{path}:{member}"), f"{path}:{member}"


_RATINGS_BASENAMES = frozenset({"ratings.csv", "ratings.dat", "u.data"})


def _read_path(path: Path, member: str | None) -> tuple[bytes, str, str]:
    """Returns (decompressed bytes, sha256 of the file as stored, name for messages)."""
    if member is not None:
        checksum = _sha256_file(path)
        data, where = _read_zip_member(path, member)
        return data, checksum, where
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not a ratings file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise SourceError(f"ratings file not found: {path}") from e
    except OSError as e:
        raise SourceError(f"cannot read the ratings file {path}: {e}") from e
    checksum = hashlib.sha256(raw).hexdigest()
    if raw[:4] == b"PK\x03\x04":
        del raw
        data, where = _read_zip_member(path, None)
        return data, checksum, where
    return _maybe_gunzip(raw, str(path)), checksum, str(path)


# --------------------------------------------------------------------------------------------
# Parsing.
# --------------------------------------------------------------------------------------------


def _is_number(field: str) -> bool:
    return bool(_NUMBER.match(field.strip()))


def _header_fields(line: str, delimiter: str) -> list[str]:
    return [f.strip().strip('"').strip() for f in line.split(delimiter)]


class _Body:
    """The data rows of a file (header removed) and the means to map rows to line numbers."""

    def __init__(self, data: bytes, start: int, first_line: int, where: str):
        self.data = data
        self.start = start  # offset of the first data byte
        self.first_line = first_line  # 1-based line number of the byte at `start`
        self.where = where
        self._lines: np.ndarray | None = None
        self._newlines: np.ndarray | None = None

    def buffer(self) -> pa.Buffer:
        return pa.py_buffer(self.data)[self.start :]

    def _byte_positions(self, byte: int) -> np.ndarray:
        arr = np.frombuffer(self.data, np.uint8)[self.start :]
        parts = [
            np.flatnonzero(arr[k : k + _CHUNK] == byte) + k for k in range(0, len(arr), _CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def newlines(self) -> np.ndarray:
        if self._newlines is None:
            self._newlines = self._byte_positions(10)
        return self._newlines

    def line_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) byte offsets (relative to `start`) of every physical line."""
        size = len(self.data) - self.start
        nl = self.newlines()
        starts = np.concatenate([[0], nl + 1])
        ends = np.concatenate([nl, [size]])
        if starts[-1] >= size:  # trailing newline: no last line
            starts, ends = starts[:-1], ends[:-1]
        return starts, ends

    def data_lines(self) -> np.ndarray:
        """1-based line number of each data row (pyarrow skips empty lines)."""
        if self._lines is None:
            starts, ends = self.line_spans()
            arr = np.frombuffer(self.data, np.uint8)[self.start :]
            length = ends - starts
            has_cr = np.zeros(len(ends), bool)
            nonzero = length > 0
            has_cr[nonzero] = arr[ends[nonzero] - 1] == 13
            nonempty = (length - has_cr) > 0
            self._lines = np.flatnonzero(nonempty) + self.first_line
        return self._lines

    def line_of(self, row: int) -> int:
        lines = self.data_lines()
        return int(lines[row]) if row < len(lines) else -1

    def text_of_line(self, line: int) -> str:
        starts, ends = self.line_spans()
        k = line - self.first_line
        raw = self.data[self.start + int(starts[k]) : self.start + int(ends[k])]
        return raw.decode("utf-8", "replace").rstrip("\r")


def _split_header(
    data: bytes, where: str, sep: str | None, header: bool | None, columns_by_name: bool
) -> tuple[bytes, str, bool, list[str], _Body]:
    """Detects delimiter and header from the first non-empty line.

    Returns:
      (data, delimiter, has_header, first line fields, body) where `data` has multi-character
      separators replaced by a single byte.
    """
    found = _NON_SPACE.search(data)
    if found is None:
        raise SourceError(f"{where}: the file is empty (no data rows)")
    text_start = data.rfind(b"\n", 0, found.start()) + 1
    first_line_no = data.count(b"\n", 0, text_start) + 1
    end = data.find(b"\n", text_start)
    end = len(data) if end < 0 else end
    first = data[text_start:end].decode("utf-8", "replace").rstrip("\r")
    if first.startswith("\ufeff"):
        first = first[1:]
        data = data[:text_start] + data[text_start + 3 :]
        end -= 3

    if sep is None:
        sep = next((d for d in _DELIMITERS if d in first), None)
        if sep is None:
            raise SourceError(
                f"{where}: cannot detect the field separator from line {first_line_no} "
                f"({first[:80]!r}); pass sep=..."
            )
    if not sep:
        raise ValueError("sep must be a non-empty string")
    delimiter = sep
    if len(sep.encode()) > 1:
        data = data.replace(sep.encode(), _SUBSTITUTE.encode())
        first = first.replace(sep, _SUBSTITUTE)
        end = data.find(b"\n", text_start)
        end = len(data) if end < 0 else end
        delimiter = _SUBSTITUTE
    fields = _header_fields(first, delimiter)

    if header is None:
        header = columns_by_name or not any(_is_number(f) for f in fields)
    if header:
        body_start, body_line = min(end + 1, len(data)), first_line_no + 1
    else:
        body_start, body_line = 0, 1
    if _NON_SPACE.search(data, body_start) is None:
        raise SourceError(f"{where}: the file has no data rows (only a header line)")
    return data, delimiter, bool(header), fields, _Body(data, body_start, body_line, where)


def _select_columns(
    columns: Mapping[str, int | str] | None, fields: list[str], has_header: bool, where: str
) -> dict[str, int]:
    """Maps each wanted field (user, item, rating, timestamp) to a 0-based column position."""
    ncols = len(fields)
    if columns is None:
        if ncols < 2:
            raise SourceError(f"{where}: expected at least 2 columns (user, item), found {ncols}")
        return {name: k for k, name in enumerate(_FIELDS[: min(ncols, 4)])}
    unknown = set(columns) - set(_FIELDS)
    if unknown:
        raise ValueError(f"columns has unknown keys {sorted(unknown)}; allowed: {_FIELDS}")
    missing = {"user", "item"} - set(columns)
    if missing:
        raise ValueError(f"columns must name the {' and '.join(sorted(missing))} column")
    selected: dict[str, int] = {}
    for name in _FIELDS:
        if name not in columns or columns[name] is None:
            continue
        spec = columns[name]
        if isinstance(spec, str):
            if not has_header:
                raise SourceError(
                    f"{where}: columns selects {name!r} by name ({spec!r}) but the file has no "
                    "header line; select columns by position instead"
                )
            if spec not in fields:
                raise SourceError(
                    f"{where}: unknown column {spec!r} for {name}; available columns: "
                    f"{', '.join(repr(f) for f in fields)}"
                )
            position = fields.index(spec)
        elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            position = int(spec)
            if not 0 <= position < ncols:
                raise SourceError(
                    f"{where}: column position {position} for {name} is out of range "
                    f"(the file has {ncols} columns, positions 0..{ncols - 1})"
                )
        else:
            raise TypeError(f"columns[{name!r}] must be a column name or position, got {spec!r}")
        if position in selected.values():
            raise ValueError(f"columns selects column {position} twice")
        selected[name] = position
    return selected


def _column_count_error(body: _Body, delimiter: str, ncols: int, arrow_message: str) -> SourceError:
    """Finds the first data line whose field count differs from `ncols`."""
    starts, ends = body.line_spans()
    counts = np.bincount(
        np.searchsorted(ends, body._byte_positions(ord(delimiter))), minlength=len(ends)
    )
    lines = body.data_lines() - body.first_line
    bad = lines[counts[lines] + 1 != ncols]
    if len(bad):
        line = int(bad[0]) + body.first_line
        return SourceError(
            f"{body.where}: line {line} has {int(counts[bad[0]]) + 1} columns, expected {ncols}: "
            f"{body.text_of_line(line)[:120]!r}"
        )
    return SourceError(f"{body.where}: wrong number of columns: {arrow_message}")


def _read_table(
    body: _Body, delimiter: str, ncols: int, selected: dict[str, int], types: dict[str, pa.DataType]
) -> pa.Table:
    names = [f"c{k}" for k in range(ncols)]
    return pa_csv.read_csv(
        pa.BufferReader(body.buffer()),
        read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 24),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter),
        convert_options=pa_csv.ConvertOptions(
            column_types={names[selected[f]]: t for f, t in types.items()},
            include_columns=[names[selected[f]] for f in types],
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _first_mismatch(column: pa.ChunkedArray, pattern: str) -> int | None:
    ok = pc.match_substring_regex(column, pattern).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if len(bad) else None


def _to_int_ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Casts a string id column to int64 when every value is an integer, else keeps it."""
    trimmed = pc.utf8_trim_whitespace(column)
    try:
        return pc.cast(trimmed, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column


def _parse(
    body: _Body, delimiter: str, ncols: int, selected: dict[str, int]
) -> dict[str, pa.ChunkedArray]:
    """Parses the selected columns: int64 or string ids, float64 rating, int64 timestamp."""
    numeric = {"rating": pa.float64(), "timestamp": pa.int64()}
    numeric = {f: t for f, t in numeric.items() if f in selected}
    attempts = [
        {"user": pa.int64(), "item": pa.int64(), **numeric},
        {"user": pa.string(), "item": pa.string(), **numeric},
    ]
    error: pa.ArrowInvalid | None = None
    for types in attempts:
        try:
            table = _read_table(body, delimiter, ncols, selected, types)
        except pa.ArrowInvalid as e:
            if "parse error" in str(e).lower():
                raise _column_count_error(body, delimiter, ncols, str(e)) from None
            error = e
            continue
        out = {f: table.column(f"c{selected[f]}") for f in types}
        for f in ("user", "item"):
            if pa.types.is_string(out[f].type):
                out[f] = _to_int_ids(out[f])
        return out

    # Some rating or timestamp failed to convert: find the first offending line.
    table = _read_table(body, delimiter, ncols, selected, {f: pa.string() for f in numeric})
    for field, pattern, what in (
        ("rating", _RE2_FLOAT, "a number"),
        ("timestamp", _RE2_INT, "an integer (seconds since the epoch)"),
    ):
        if field not in numeric:
            continue
        column = table.column(f"c{selected[field]}")
        row = _first_mismatch(column, pattern)
        if row is not None:
            value = column[row].as_py()
            raise SourceError(
                f"{body.where}: line {body.line_of(row)}: {field} {value!r} is not {what}"
            )
    raise SourceError(f"{body.where}: cannot parse the ratings: {error}")


def _dense_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, sorted unique ids): codes[k] is the rank of column[k] among the unique ids."""
    uniques = pc.unique(column)
    uniques = uniques.take(pc.array_sort_indices(uniques))
    codes = pc.index_in(column, value_set=uniques).to_numpy()  # int32
    if pa.types.is_integer(uniques.type):
        ids = uniques.to_numpy().astype(np.int64, copy=False)
    else:
        ids = np.asarray(uniques.to_pylist(), dtype=str)
    return codes, ids


# --------------------------------------------------------------------------------------------
# Duplicates, filters, matrix.
# --------------------------------------------------------------------------------------------


class _Entries:
    """Ratings as parallel arrays sorted by (user, item), with the bookkeeping of filters."""

    def __init__(self, users, items, values, timestamps, user_ids, item_ids):
        self.users = users
        self.items = items
        self.values = values
        self.timestamps = timestamps
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.filters: list[dict] = []

    def __len__(self) -> int:
        return len(self.users)

    def _present(self) -> tuple[int, int]:
        nu = np.count_nonzero(np.bincount(self.users, minlength=len(self.user_ids)))
        ni = np.count_nonzero(np.bincount(self.items, minlength=len(self.item_ids)))
        return int(nu), int(ni)

    def keep(self, mask: np.ndarray, record: dict) -> None:
        """Keeps the entries where `mask` holds and appends `record` with the counts removed."""
        before_rows, (before_u, before_i) = len(self), self._present()
        self.users, self.items = self.users[mask], self.items[mask]
        self.values = self.values[mask]
        if self.timestamps is not None:
            self.timestamps = self.timestamps[mask]
        after_u, after_i = self._present()
        record.update(
            rows_removed=before_rows - len(self),
            users_removed=before_u - after_u,
            items_removed=before_i - after_i,
        )
        self.filters.append(record)
        logger.info(
            "filter %s: removed %d ratings, %d users, %d items (%d ratings left)",
            record["name"],
            record["rows_removed"],
            record["users_removed"],
            record["items_removed"],
            len(self),
        )


def _sort_and_deduplicate(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None,
    num_items: int,
    mode: str,
    body: _Body,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict | None]:
    """Sorts entries by (user, item) and resolves duplicate pairs according to `mode`."""
    key = users.astype(np.int64) * num_items + items
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
        record = None if mode == "error" else {"name": f"duplicates:{mode}", "rows_removed": 0}
        return users, items, values, timestamps, record
    order = np.argsort(key, kind="stable")
    key = key[order]
    same = key[1:] == key[:-1]
    if not same.any():
        ts = None if timestamps is None else timestamps[order]
        record = None if mode == "error" else {"name": f"duplicates:{mode}", "rows_removed": 0}
        return users[order], items[order], values[order], ts, record
    if mode == "error":
        later = int(order[1:][same].min())
        first = int(np.flatnonzero((users == users[later]) & (items == items[later]))[0])
        raise SourceError(
            f"{body.where}: duplicate rating for user {user_ids[users[later]].item()!r}, item "
            f"{item_ids[items[later]].item()!r} on lines {body.line_of(first)} and "
            f"{body.line_of(later)}; pass duplicates='last', 'mean' or 'max' to combine them"
        )
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    lasts = np.concatenate([starts[1:], [len(key)]]) - 1
    if mode == "last":
        kept_rows = order[lasts]
        new_values = values[kept_rows]
        new_ts = None if timestamps is None else timestamps[kept_rows]
    else:
        values_sorted = values[order]
        if mode == "mean":
            counts = np.diff(np.concatenate([starts, [len(key)]]))
            new_values = np.add.reduceat(values_sorted, starts) / counts
        else:
            new_values = np.maximum.reduceat(values_sorted, starts)
        new_ts = None if timestamps is None else np.maximum.reduceat(timestamps[order], starts)
        kept_rows = order[starts]
    record = {"name": f"duplicates:{mode}", "rows_removed": int(len(key) - len(starts))}
    return users[kept_rows], items[kept_rows], new_values, new_ts, record


def _distinct_timestamps_per_user(users: np.ndarray, timestamps: np.ndarray, n: int) -> np.ndarray:
    """Number of distinct timestamps of each of the `n` users."""
    if len(users) == 0:
        return np.zeros(n, np.int64)
    low, high = int(timestamps.min()), int(timestamps.max())
    if high - low < 2**32 and n < 2**31:  # one int64 sort key: user in the high bits
        key = (users.astype(np.int64) << 32) | (timestamps - low)
        key.sort()
        new = np.ones(len(key), bool)
        np.not_equal(key[1:], key[:-1], out=new[1:])
        return np.bincount((key[new] >> 32).astype(np.int64), minlength=n)
    order = np.lexsort((timestamps, users))
    u, t = users[order], timestamps[order]
    new = np.ones(len(u), bool)
    new[1:] = (u[1:] != u[:-1]) | (t[1:] != t[:-1])
    return np.bincount(u[new], minlength=n)


def _check_threshold(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def load_ratings(
    source: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    sep: str | None = None,
    header: bool | None = None,
    columns: Mapping[str, int | str] | None = None,
    preprocessing: str = "raw",
    implicit: bool = False,
    min_distinct_timestamps: int = 0,
    min_user_ratings: int = 0,
    min_item_ratings: int = 0,
    duplicates: str = "error",
    progress: bool = False,
) -> Ratings:
    """Loads a user x item rating matrix from a MovieLens release or a ratings file.

    Files hold one rating per line. The separator (``::``, tab, comma, ``;`` or ``|``) is taken
    from the first line unless `sep` is given; that line is a header when none of its fields is
    a number (or when `columns` selects by name) unless `header` says otherwise. Gzipped files
    are decompressed; a zip archive is read from its single ``ratings.csv``/``ratings.dat``/
    ``u.data`` member. By default the columns are user, item, rating, timestamp by position,
    as many as the file has (2 columns: implicit data, every rating 1.0).

    User and item ids map to rows and columns in sorted order of the original id; ids stay
    int64 when they are all integers, else strings. Entries of each row are sorted by column.

    Processing order: duplicates, then `min_distinct_timestamps`, `min_user_ratings`,
    `min_item_ratings`. Each filter is a single pass (removing items can leave a user under
    `min_user_ratings`; it is not applied again) and is recorded in `Ratings.filters` when its
    threshold is positive. Users and items left without ratings are dropped.

    Args:
      source: a MovieLens name (a key of `MOVIELENS`: 'ml-latest-small', 'ml-100k', 'ml-1m',
        'ml-10m', 'ml-20m', 'ml-25m') or the path of a ratings file.
      data_dir: MovieLens only: folder holding the official zip or its extracted files;
        default ``$FRACTAL_TFDS_DATA_DIR``. See `resolve_movielens`.
      cache_dir: MovieLens only: download cache; default ``$FRACTAL_TFDS_CACHE_DIR`` or
        ~/.cache/fractal_tfds.
      download: MovieLens only: download the zip when it is not found locally.
      sep: field separator; default detected (MovieLens: the release's).
      header: whether the first line is a header; default detected (MovieLens: the release's).
      columns: which columns hold what: a mapping with keys 'user', 'item' (required),
        'rating' and 'timestamp' (optional) to a 0-based position or, with a header, a column
        name, e.g. ``{"user": "userId", "item": "movieId", "rating": "rating"}``. Without a
        'rating' column every rating is 1.0.
      preprocessing: 'raw' (ratings as they are), 'paper' ((r - mean) / max |r - mean| over
        the surviving ratings, so values lie in [-1, 1]; all zeros when every rating is the
        same) or 'implicit' (every observed entry is 1.0).
      implicit: shorthand for ``preprocessing="implicit"``.
      min_distinct_timestamps: drop users with fewer distinct timestamps (needs timestamps).
      min_user_ratings: drop users with fewer ratings.
      min_item_ratings: drop items with fewer ratings.
      duplicates: what to do with several ratings of one (user, item) pair: 'error' (raise),
        'last' (keep the last one in file order, with its timestamp), 'mean' or 'max' (combine
        the ratings; the timestamp is the latest one).
      progress: show a progress bar while downloading.

    Returns:
      The `Ratings`: float64 `matrix` with explicit zeros kept, float32 `raw_values` (the
      original, or combined, ratings), `timestamps` (None without a timestamp column),
      `checksum` = sha256 of the ratings file as stored (of the zip when read from one).

    Raises:
      SourceError: the source is unknown, missing, unreadable, fails its checksum, is empty or
        malformed (the message names the file and line), has duplicates with
        ``duplicates="error"``, or nothing survives the filters.
      ValueError: invalid arguments.
    """
    if implicit:
        if preprocessing not in ("raw", "implicit"):
            raise ValueError(f"implicit=True conflicts with preprocessing={preprocessing!r}")
        preprocessing = "implicit"
    if preprocessing not in _PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {_PREPROCESSING}, got {preprocessing!r}")
    if duplicates not in _DUPLICATES:
        raise ValueError(f"duplicates must be one of {_DUPLICATES}, got {duplicates!r}")
    min_distinct_timestamps = _check_threshold("min_distinct_timestamps", min_distinct_timestamps)
    min_user_ratings = _check_threshold("min_user_ratings", min_user_ratings)
    min_item_ratings = _check_threshold("min_item_ratings", min_item_ratings)

    # Locate and read the bytes.
    source_str = os.fspath(source)
    if isinstance(source_str, bytes):
        source_str = os.fsdecode(source_str)
    if isinstance(source, str) and source in MOVIELENS:
        entry = MOVIELENS[source]
        path, member = resolve_movielens(
            source, data_dir=data_dir, cache_dir=cache_dir, download=download, progress=progress
        )
        sep = entry.sep if sep is None else sep
        header = entry.has_header if header is None else header
        data, checksum, where = _read_path(path, member)
    else:
        path = Path(source_str).expanduser()
        if (
            not path.exists()
            and isinstance(source, str)
            and re.fullmatch(r"ml-[\w.-]+", source)
            and not path.suffix
        ):
            raise SourceError(
                f"unknown MovieLens name {source!r}; known names: {', '.join(MOVIELENS)} "
                "(or pass the path of a ratings file)"
            )
        data, checksum, where = _read_path(path, None)

    by_name = columns is not None and any(isinstance(v, str) for v in columns.values())
    data, delimiter, has_header, fields, body = _split_header(data, where, sep, header, by_name)
    selected = _select_columns(columns, fields, has_header, where)
    parsed = _parse(body, delimiter, len(fields), selected)
    num_rows = len(parsed["user"])
    if num_rows == 0:
        raise SourceError(f"{where}: the file has no data rows")

    users, user_ids = _dense_codes(parsed.pop("user"))
    items, item_ids = _dense_codes(parsed.pop("item"))
    if "rating" in parsed:
        values = parsed.pop("rating").to_numpy()
        finite = np.isfinite(values)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise SourceError(
                f"{where}: line {body.line_of(row)}: rating is {values[row]} "
                "(NaN and infinite ratings are not allowed)"
            )
    else:
        values = np.ones(num_rows, np.float64)
    timestamps = parsed.pop("timestamp").to_numpy() if "timestamp" in parsed else None
    del parsed

    users, items, values, timestamps, dup_record = _sort_and_deduplicate(
        users, items, values, timestamps, len(item_ids), duplicates, body, user_ids, item_ids
    )
    del body, data
    entries = _Entries(users, items, values, timestamps, user_ids, item_ids)
    if dup_record is not None:
        dup_record.update(users_removed=0, items_removed=0)
        entries.filters.append(dup_record)
        logger.info(
            "%s: removed %d duplicate ratings", dup_record["name"], dup_record["rows_removed"]
        )

    if min_distinct_timestamps > 0:
        if entries.timestamps is None:
            raise SourceError(
                f"{where}: min_distinct_timestamps={min_distinct_timestamps} needs timestamps, "
                "but the source has no timestamp column"
            )
        distinct = _distinct_timestamps_per_user(entries.users, entries.timestamps, len(user_ids))
        entries.keep(
            distinct[entries.users] >= min_distinct_timestamps,
            {"name": "min_distinct_timestamps", "threshold": min_distinct_timestamps},
        )
    if min_user_ratings > 0:
        counts = np.bincount(entries.users, minlength=len(user_ids))
        entries.keep(
            counts[entries.users] >= min_user_ratings,
            {"name": "min_user_ratings", "threshold": min_user_ratings},
        )
    if min_item_ratings > 0:
        counts = np.bincount(entries.items, minlength=len(item_ids))
        entries.keep(
            counts[entries.items] >= min_item_ratings,
            {"name": "min_item_ratings", "threshold": min_item_ratings},
        )
    if len(entries) == 0:
        raise SourceError(
            f"{where}: every rating was filtered out (filters: "
            f"{[f['name'] + ':' + str(f.get('threshold', '')) for f in entries.filters]})"
        )

    # Drop users and items without ratings; renumbering keeps the (user, item) order.
    row_counts = np.bincount(entries.users, minlength=len(user_ids))
    user_present = row_counts > 0
    item_present = np.bincount(entries.items, minlength=len(item_ids)) > 0
    user_ids, item_ids = user_ids[user_present], item_ids[item_present]
    shape = (len(user_ids), len(item_ids))
    index_dtype = np.int32 if max(shape[1], len(entries)) < 2**31 else np.int64
    new_column = np.cumsum(item_present, dtype=index_dtype) - 1
    cols = new_column[entries.items]
    indptr = np.zeros(shape[0] + 1, index_dtype)
    np.cumsum(row_counts[user_present], out=indptr[1:])

    raw = entries.values.astype(np.float64, copy=False)
    if preprocessing == "implicit":
        matrix_values = np.ones(len(raw), np.float64)
    elif preprocessing == "paper":
        centred = raw - raw.mean()
        scale = np.abs(centred).max()
        matrix_values = centred / scale if scale > 0 else centred
    else:
        matrix_values = raw  # not shared: raw_values below is a float32 copy

    matrix = sp.csr_matrix((matrix_values, cols, indptr), shape=shape)
    matrix.has_sorted_indices = True
    ratings = Ratings(
        matrix=matrix,
        raw_values=raw.astype(np.float32),
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=entries.timestamps,
        source=source_str,
        checksum=checksum,
        preprocessing=preprocessing,
        filters=tuple(entries.filters),
    )
    logger.info(
        "loaded %s: %d users x %d items, %d ratings (%s)",
        source_str,
        ratings.num_users,
        ratings.num_items,
        ratings.nnz,
        preprocessing,
    )
    return ratings
