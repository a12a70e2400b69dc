"""NCF reference models and benchmarks (installed as `fractal_tfds.models`)."""
