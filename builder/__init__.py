"""TFDS dataset folders of fractal-tfds (installed as `fractal_tfds.builder`)."""
