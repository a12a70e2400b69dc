"""fractal-tfds: fractal (Kronecker) expansions of real rating data for TensorFlow."""

from fractal_tfds.expansion import PRESETS, Expansion, ShardSpec
from fractal_tfds.io import read_expansion, read_metadata, write_expansion
from fractal_tfds.ratings import Ratings
from fractal_tfds.reduce import Reduced, parse_factors, reduce_ratings
from fractal_tfds.split import Split, leave_last_out

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "Expansion", "Ratings", "Reduced", "ShardSpec", "Split", "leave_last_out",
    "parse_factors", "read_expansion", "read_metadata", "reduce_ratings", "write_expansion",
]

# Registers the `fractal_movielens` TFDS dataset (imports tensorflow_datasets lazily, not TF).
from fractal_tfds.builder.fractal_movielens import fractal_movielens_dataset_builder  # noqa: E402,F401
