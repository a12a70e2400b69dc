"""fractal-tfds: realistic, orders-of-magnitude larger rating data sets for TensorFlow."""

from setuptools import setup

setup(
    name="fractal-tfds",
    version="0.1.0",
    description="Fractal (Kronecker) expansions of MovieLens for TFDS, tf.data and NCF benchmarks",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Only `fractal_tfds` lands in site-packages: the TFDS dataset folder (builder/) and the NCF
    # model (models/) are installed as its subpackages, never as top-level `builder`/`models`.
    packages=[
        "fractal_tfds",
        "fractal_tfds.builder",
        "fractal_tfds.builder.fractal_movielens",
        "fractal_tfds.models",
    ],
    package_dir={
        "fractal_tfds": "fractal_tfds",
        "fractal_tfds.builder": "builder",
        "fractal_tfds.builder.fractal_movielens": "builder/fractal_movielens",
        "fractal_tfds.models": "models",
    },
    package_data={"fractal_tfds.builder.fractal_movielens": [
        "checksums.tsv", "README.md", "CITATIONS.bib", "TAGS.txt", "dummy_data/*", "dummy_data/*/*"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "scikit-image>=0.21",
        "tensorflow>=2.16",
        "tensorflow-datasets>=4.9.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pyarrow>=14",
    ],
    extras_require={
        "beam": ["apache-beam>=2.50", "array-record>=0.5"],
        "test": ["pytest>=7", "ruff>=0.4", "array-record>=0.5", "apache-beam>=2.50", "dill",
                 "mlcroissant"],
        # The `tfds` command of tensorflow-datasets 4.9.x imports mlcroissant.
        "cli": ["mlcroissant"],
    },
    entry_points={"console_scripts": ["fractal-tfds=fractal_tfds.cli:main"]},
)
