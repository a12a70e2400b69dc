"""fractal_movielens: fractal (Kronecker) expansions of MovieLens as a TFDS dataset.

    import fractal_tfds  # registers 'fractal_movielens'
    ds = tfds.load('fractal_movielens/latest-small-4x4-movielens-1b', split='train')

Configs (`BUILDER_CONFIGS`), each also as `<name>-user-histories` (one example per synthetic
user). Users can build their own expansion with `FractalMovieLensConfig`:

    cfg = FractalMovieLensConfig(name='mine', source='ml-1m', factors=(8, 8), preset='coherent')
    b = Builder(config=cfg, data_dir=...); b.download_and_prepare()

See README.md beside this file for splits, order, Beam runs and the offline (manual_dir) build.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from fractal_tfds.builder.fractal_movielens import pipeline
from fractal_tfds.expansion import PRESETS, Expansion
from fractal_tfds.reduce import parse_factors, reduce_ratings
from fractal_tfds.split import leave_last_out

logger = logging.getLogger(__name__)

_DESCRIPTION = """
Fractal expansions (Belletti et al. 2019, arXiv 1901.08910) of MovieLens: R~ = R^ (x) R with a
small R^ from R's leading spectrum (Algorithm 2) and the randomized variants of Eq. (2).

Features (layout `interactions`, one example per interaction): `user_id`, `item_id` (synthetic
ids), `rating` (float32: the product value, 1.0 for implicit presets or the original rating for
`coherent`), `timestamp` (of the original rating), `source_user_id` and `source_movie_id` (the
MovieLens ids the interaction was expanded from).
Layout `user_histories` (configs `*-user-histories`): one example per synthetic user with
`user_id` and the sequences `item_ids`, `ratings`, `timestamps`, `source_user_ids`,
`source_movie_ids` sorted by (timestamp, item_id).

Splits: leave-last-out per synthetic user (`fractal_tfds.split.leave_last_out`, the definition
shared with the lazy tf.data pipeline): `test` holds each synthetic user's one latest kept
interaction (ties: lowest item id), `train` everything else. Examples are stored in canonical
order (blocks of R^ row-major; users ascending for user_histories), not shuffled.
"""

_CITATION = """
@article{belletti2019scalable,
  title={Scalable Realistic Recommendation Datasets through Fractal Expansions},
  author={Belletti, Francois and Lakshmanan, Karthik and Krichene, Walid and Chen, Yi-Fan
          and Anderson, John},
  journal={arXiv preprint arXiv:1901.08910},
  year={2019}
}
"""

# MovieLens releases this dataset can expand: zip URL (checksums in checksums.tsv).
_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
MOVIELENS_ZIPS = {
    "ml-latest-small": _BASE_URL + "ml-latest-small.zip",
    "ml-100k": _BASE_URL + "ml-100k.zip",
    "ml-1m": _BASE_URL + "ml-1m.zip",
    "ml-20m": _BASE_URL + "ml-20m.zip",
    "ml-25m": _BASE_URL + "ml-25m.zip",
}

LAYOUTS = ("interactions", "user_histories")
FILE_FORMATS = ("tfrecord", "array_record")
# Builds above this many interactions need a Beam runner (a cluster) unless the config says so.
LOCAL_WRITE_THREADS = 2
DEFAULT_MAX_LOCAL_INTERACTIONS = 20_000_000_000

STATE_FILENAME = "fractal_state.npz"


@dataclasses.dataclass(eq=False, kw_only=True)
class FractalMovieLensConfig(tfds.core.BuilderConfig):
    """One expansion of one source.

    Attributes:
      source: a MovieLens name (ml-latest-small, ml-100k, ml-1m, ml-20m, ml-25m; downloaded
        through the TFDS download manager or read from `manual_dir`) or the path of a ratings
        file (anything `fractal_tfds.sources.load_ratings` reads).
      factors: (m2, n2), the shape of R^.
      preset: a key of `fractal_tfds.PRESETS` (paper, paper-shuffled, movielens-1b, coherent).
      seed: the seed every random choice flows from.
      preprocessing: 'raw', 'paper' or 'implicit' (see `load_ratings`).
      min_distinct_timestamps: drop real users with fewer distinct timestamps.
      resize: 'area' or 'bilinear' (`reduce_ratings`).
      layout: 'interactions' (one example per interaction) or 'user_histories'.
      max_shard_interactions: target interactions per output shard / Beam work unit.
      requires_beam_runner: refuse to build without a Beam runner (cluster-sized configs).
    """

    source: str = "ml-latest-small"
    factors: tuple[int, int] = (16, 32)
    preset: str = "coherent"
    seed: int = 0
    preprocessing: str = "raw"
    min_distinct_timestamps: int = 0
    resize: str = "area"
    layout: str = "interactions"
    max_shard_interactions: int = 4_000_000
    requires_beam_runner: bool = False
    approx_num_interactions: int | None = None

    def __post_init__(self):
        if isinstance(self.factors, str):
            self.factors = parse_factors(self.factors)
        self.factors = tuple(int(f) for f in self.factors)
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {LAYOUTS}")
        if self.description is None:
            m2, n2 = self.factors
            self.description = (f"{self.source} expanded {m2}x{n2} with preset {self.preset!r} "
                                f"(seed {self.seed}, {self.preprocessing} input), layout {self.layout}.")

    def options(self) -> dict:
        return dict(source=self.source, factors=list(self.factors), preset=self.preset,
                    seed=self.seed, preprocessing=self.preprocessing,
                    min_distinct_timestamps=self.min_distinct_timestamps, resize=self.resize,
                    layout=self.layout)


def _ml1b(name, source, factors, **kw):
    # The published MovieLens-1B recipe: implicit input, users with >= 3 distinct timestamps,
    # bilinear resize, per-block permutations, exact-count sampling, binary values.
    return dict(name=name, source=source, factors=factors, preset="movielens-1b",
                preprocessing="implicit", min_distinct_timestamps=3, resize="bilinear", **kw)


def _paper(name, source, factors, **kw):
    return dict(name=name, source=source, factors=factors, preset="paper",
                preprocessing="paper", resize="area", **kw)


_BASE_CONFIGS = [
    _ml1b("latest-small-4x4-movielens-1b", "ml-latest-small", (4, 4)),
    _ml1b("latest-small-16x32-movielens-1b", "ml-latest-small", (16, 32)),
    _paper("latest-small-16x32-paper", "ml-latest-small", (16, 32)),
    dict(name="latest-small-16x32-coherent", source="ml-latest-small", factors=(16, 32),
         preset="coherent", preprocessing="raw", resize="area"),
    _paper("100k-16x32-paper", "ml-100k", (16, 32)),
    _ml1b("1m-16x32-movielens-1b", "ml-1m", (16, 32)),
    _ml1b("20m-16x32-movielens-1b", "ml-20m", (16, 32), max_shard_interactions=20_000_000),
    _paper("20m-16x32-paper", "ml-20m", (16, 32), max_shard_interactions=20_000_000,
           approx_num_interactions=10_240_000_000),
    _paper("20m-128x256-paper", "ml-20m", (128, 256), max_shard_interactions=20_000_000,
           requires_beam_runner=True, approx_num_interactions=655_000_000_000),
]


def _make_configs() -> list[FractalMovieLensConfig]:
    configs = []
    for kw in _BASE_CONFIGS:
        configs.append(FractalMovieLensConfig(**kw))
    for kw in _BASE_CONFIGS:
        configs.append(FractalMovieLensConfig(**dict(kw, name=kw["name"] + "-user-histories",
                                                     layout="user_histories")))
    return configs


def _features(layout: str) -> tfds.features.FeaturesDict:
    if layout == "interactions":
        return tfds.features.FeaturesDict({
            "user_id": np.int64, "item_id": np.int64, "rating": np.float32,
            "timestamp": np.int64, "source_user_id": np.int64, "source_movie_id": np.int64})
    seq = lambda dt: tfds.features.Tensor(shape=(None,), dtype=dt)  # noqa: E731
    return tfds.features.FeaturesDict({
        "user_id": np.int64, "item_ids": seq(np.int64), "ratings": seq(np.float32),
        "timestamps": seq(np.int64), "source_user_ids": seq(np.int64),
        "source_movie_ids": seq(np.int64)})


def _uses_beam(download_config) -> bool:
    if download_config is None:
        return False
    if download_config.beam_runner is not None:
        return True
    opts = download_config.beam_options
    if opts is None:
        return False
    try:
        return bool(opts.get_all_options(drop_default=True))
    except Exception:  # noqa: BLE001 - any non-empty options object means "use Beam"
        return True


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=(
        "fractal_movielens" in tfds.core.registered._DATASET_REGISTRY)):  # noqa: SLF001
    """DatasetBuilder for fractal_movielens (see module docstring)."""

    # The metadata files (checksums.tsv, README.md, ...) live beside this module; TFDS would
    # otherwise look under the installed package name (fractal_tfds/builder/...).
    pkg_dir_path = epath.Path(__file__).parent
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _make_configs()
    DEFAULT_CONFIG_NAME = "latest-small-4x4-movielens-1b"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Offline builds: put the official GroupLens zip (e.g. ml-latest-small.zip, ml-20m.zip from
    https://files.grouplens.org/datasets/movielens/) or its extracted ratings file
    (ratings.csv / ratings.dat / u.data, optionally inside its folder, e.g.
    ml-latest-small/ratings.csv) into `manual_dir` (default <data_dir>/downloads/manual/) and
    build with `tfds build --imports fractal_tfds --manual_dir DIR --config CONFIG`.
    A zip is verified against checksums.tsv; extracted files cannot be verified.
    Without files in manual_dir the zip is downloaded (checksum verified).
    """

    code_path = epath.Path(__file__)  # (TFDS derives it from the installed package name)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=_features(self.builder_config.layout),
            supervised_keys=None,
            homepage="https://grouplens.org/datasets/movielens/",
            citation=_CITATION,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    # ------------------------------------------------------------------ source
    def _load_ratings(self, dl_manager):
        from fractal_tfds.sources import MOVIELENS, load_ratings

        cfg = self.builder_config
        kw = dict(preprocessing=cfg.preprocessing,
                  min_distinct_timestamps=cfg.min_distinct_timestamps)
        if cfg.source not in MOVIELENS:
            return load_ratings(cfg.source, **kw)  # a ratings file given by path
        manual = _manual_dir(dl_manager)
        if manual is not None and _has_source_files(manual, cfg.source):
            logger.info("reading %s from manual_dir %s", cfg.source, manual)
            return load_ratings(cfg.source, data_dir=manual, download=False, **kw)
        if cfg.source not in MOVIELENS_ZIPS:
            raise ValueError(f"{cfg.source}: no registered download; put it into manual_dir")
        path = dl_manager.download(MOVIELENS_ZIPS[cfg.source])
        return load_ratings(str(path), **kw)

    def _make_state(self, dl_manager) -> pipeline.State:
        cfg = self.builder_config
        ratings = self._load_ratings(dl_manager)
        reduced = reduce_ratings(ratings, cfg.factors, seed=cfg.seed, resize=cfg.resize)
        x = Expansion(ratings, reduced, cfg.preset, cfg.seed)
        return pipeline.State(x, leave_last_out(x), cfg.options())

    def _check_can_build(self, download_config) -> None:
        cfg = self.builder_config
        if cfg.requires_beam_runner and not _uses_beam(download_config):
            size = (f"~{cfg.approx_num_interactions / 1e9:.0f} billion interactions"
                    if cfg.approx_num_interactions else "too large for one machine")
            raise RuntimeError(
                f"fractal_movielens/{cfg.name} is {size}: it is built only on a cluster through "
                "Apache Beam. Pass a runner, e.g. `tfds build --imports fractal_tfds --config "
                f"{cfg.name} --beam_pipeline_options=runner=DataflowRunner,project=P,"
                "region=R,temp_location=gs://B/tmp --data_dir gs://B/tfds` or "
                "download_and_prepare(download_config=tfds.download.DownloadConfig("
                "beam_runner=..., beam_options=...)); see the builder README. Nothing was started.")

    # ------------------------------------------------------------------ generation
    def _generate_splits(self, dl_manager, download_config):
        """Writes all shards of both splits (fast vectorized records, streaming per shard)."""
        self._check_can_build(download_config)
        cfg = self.builder_config
        state = self._make_state(dl_manager)
        x = state.expansion
        if x.num_interactions > DEFAULT_MAX_LOCAL_INTERACTIONS and not _uses_beam(download_config):
            raise RuntimeError(
                f"{cfg.name}: {x.num_interactions:,} interactions is too many for a local build; "
                "pass a Beam runner (see README)")
        tasks = pipeline.plan_tasks(state, cfg.layout, cfg.max_shard_interactions)
        fmt = self.info.file_format.file_suffix
        templates = {s: self._get_filename_template(split_name=s) for s in ("train", "test")}
        paths = {t[1]: tuple(str(templates[s].sharded_filepath(
            shard_index=t[1], num_shards=len(tasks))) for s in ("train", "test")) for t in tasks}
        epath.Path(self.data_path).mkdir(parents=True, exist_ok=True)

        if _uses_beam(download_config):
            results = self._run_beam(state, tasks, paths, fmt, download_config)
        else:
            # Two threads: NumPy generation and the record writers release the GIL for most of
            # their time, so both cores work without forking a process that holds TensorFlow.
            from tqdm.auto import tqdm

            with concurrent.futures.ThreadPoolExecutor(LOCAL_WRITE_THREADS) as pool:
                jobs = pool.map(lambda t: pipeline.write_task(state, t, *paths[t[1]], fmt), tasks)
                results = list(tqdm(jobs, total=len(tasks), unit="shard",
                                    desc=f"fractal_movielens/{cfg.name}"))
        results = sorted(results, key=lambda r: r["index"])
        self._record_metadata(state)
        split_infos = []
        for s in ("train", "test"):
            split_infos.append(tfds.core.SplitInfo(
                name=s, shard_lengths=[r[s] for r in results],
                num_bytes=sum(r[f"{s}_bytes"] for r in results),
                filename_template=templates[s]))
        self._check_counts(state, split_infos)
        return split_infos

    def _run_beam(self, state, tasks, paths, fmt, download_config):
        import apache_beam as beam

        prefix = epath.Path(self.data_path)
        state_path = str(prefix / STATE_FILENAME)
        pipeline.save_state(state, state_path)
        # Per-shard results (lengths, bytes) come back through small text files.
        out_dir = str(prefix / "fractal_beam_results")
        results_prefix = out_dir + "/shard_results"
        options = download_config.beam_options
        with beam.Pipeline(runner=download_config.beam_runner, options=options) as p:
            _ = (p
                 | "Tasks" >> beam.Create(tasks)
                 | "Reshuffle" >> beam.Reshuffle()  # one work unit per shard, no fusion
                 | "WriteShards" >> beam.Map(pipeline.beam_write_task, state_path=state_path,
                                             paths=paths, file_format=fmt)
                 | "Results" >> beam.io.WriteToText(results_prefix, file_name_suffix=".jsonl"))

        results = []
        for f in epath.Path(out_dir).glob("shard_results*.jsonl"):
            results.extend(json.loads(line) for line in f.read_text().splitlines() if line)
            f.unlink()
        epath.Path(out_dir).rmtree(missing_ok=True) if hasattr(epath.Path, "rmtree") else None
        epath.Path(state_path).unlink()
        if len(results) != len(tasks):
            raise RuntimeError(f"Beam wrote {len(results)} of {len(tasks)} shards")
        return results

    def _record_metadata(self, state) -> None:
        x, split = state.expansion, state.split
        md = self.info.metadata
        md["num_users"] = x.num_users
        md["num_items"] = x.num_items
        md["num_interactions"] = x.num_interactions
        md["num_test"] = split.num_test
        md["options"] = x.options()
        md["config"] = state.options
        md["source"] = {"name": x.ratings.source, "sha256": x.ratings.checksum,
                        "num_users": x.m, "num_items": x.n, "num_interactions": x.nnz,
                        "preprocessing": x.ratings.preprocessing}
        md["tables_sha256"] = x.fingerprint()

    def _check_counts(self, state, split_infos) -> None:
        if self.builder_config.layout != "interactions":
            return
        n = {si.name: sum(si.shard_lengths) for si in split_infos}
        x, split = state.expansion, state.split
        if n["test"] != split.num_test or n["train"] + n["test"] != x.num_interactions:
            raise RuntimeError(f"wrote {n}, expected {x.num_interactions} interactions with "
                               f"{split.num_test} test ones")

    # Reference path (one dict per example; TFDS's generic writer). Not used by
    # download_and_prepare, which overrides `_generate_splits` with the vectorized writer.
    def _split_generators(self, dl_manager):
        state = self._make_state(dl_manager)
        tasks = pipeline.plan_tasks(state, self.builder_config.layout,
                                    self.builder_config.max_shard_interactions)
        return {s: self._generate_examples(state, tasks, s) for s in ("train", "test")}

    def _generate_examples(self, state, tasks, split_name):
        for t in tasks:
            yield from pipeline.iter_examples(state, t, split_name)


def _manual_dir(dl_manager):
    try:
        d = dl_manager.manual_dir
    except (AssertionError, ValueError, AttributeError):
        return None
    if d is None or not epath.Path(d).is_dir():
        return None
    return str(d)


def _has_source_files(folder: str, name: str) -> bool:
    from fractal_tfds.sources import MOVIELENS

    entry = MOVIELENS[name]
    base = entry.member.rsplit("/", 1)[-1]
    return any((epath.Path(folder) / p).is_file() for p in (
        entry.url.rsplit("/", 1)[-1], base, entry.member, f"{name}/{base}"))


def batched_dataset(builder: tfds.core.DatasetBuilder, split: str = "train",
                    batch_size: int = 65536, features: list[str] | None = None,
                    cycle_length: int = 2, deterministic: bool = True):
    """Fast read path for the `interactions` layout (tfrecord): each shard file is batched as
    serialized records and parsed with one `tf.io.parse_example` per batch (TFDS parses one
    example at a time), shards interleaved in parallel. `features` selects a subset of columns
    (fewer columns parse faster).

    Returns a `tf.data.Dataset` of dicts of (batch_size,) tensors (the last one may be shorter).
    """
    import tensorflow as tf

    files = [str(p) for p in builder.info.splits[split].filepaths]
    spec = parse_spec(builder, features)
    # Each reader parses its own small batches (8,192 records: parsing stays in cache), readers
    # run in parallel, and `rebatch` joins them into batch_size: measured 1.0-1.2M/s on 2 cores
    # where batching 65,536 serialized records before one parse gave 0.4-0.6M/s.
    inner = min(8192, batch_size)
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=16 << 20).batch(inner).map(
            lambda r: tf.io.parse_example(r, spec)),
        cycle_length=cycle_length, num_parallel_calls=cycle_length, deterministic=deterministic)
    return ds.rebatch(batch_size).prefetch(tf.data.AUTOTUNE)


def parse_spec(builder: tfds.core.DatasetBuilder, features: list[str] | None = None) -> dict:
    """`tf.io.parse_example` spec of the builder's features (optionally a subset)."""
    import tensorflow as tf

    spec = {}
    for name, feat in builder.info.features.items():
        if features is not None and name not in features:
            continue
        dt = feat.np_dtype
        spec[name] = (tf.io.FixedLenFeature([], dt) if feat.shape == ()
                      else tf.io.RaggedFeature(dt))
    return spec


def random_access_batch(builder: tfds.core.DatasetBuilder, split: str, indices,
                        features: list[str] | None = None, _cache: dict = {}) -> dict:  # noqa: B006
    """Examples at `indices` of an array_record build, parsed in one `tf.io.parse_example`.

    Random access without TFDS's per-example Python decoding (`tfds.data_source`): the
    ArrayRecord reader fetches the serialized records, TensorFlow parses them as a batch.
    """
    import tensorflow as tf
    from array_record.python import array_record_data_source

    key = (str(builder.data_path), split)
    if key not in _cache:
        files = [str(p) for p in builder.info.splits[split].filepaths]
        _cache[key] = array_record_data_source.ArrayRecordDataSource(files)
    records = _cache[key].__getitems__([int(i) for i in indices])
    return tf.io.parse_example(records, parse_spec(builder, features))
