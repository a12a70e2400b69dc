"""The `fractal_movielens` TFDS dataset."""
