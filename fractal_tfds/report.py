"""Statistics report of an expansion: JSON plus the paper's figures as PNGs.

Figures (log-log rank plots, as Figures 1, 3 and 4 of the paper):
  sums.png     row sums, column sums and singular values of R, R^ and R~ (analytic, and measured
               on the written expansion when given).
  degrees.png  user and item degree distributions of R and R~: whether the heavy tails survive.
"""

from __future__ import annotations

import json
import os

import numpy as np


def _ranked(x: np.ndarray) -> np.ndarray:
    x = np.sort(np.asarray(x, np.float64))[::-1]
    return x[x > 0]


def _rank_plot(ax, series: list[tuple[str, np.ndarray]], title: str) -> None:
    for label, values in series:
        v = _ranked(values)
        if len(v):
            ax.loglog(np.arange(1, len(v) + 1) / len(v), v / v[0], label=label, lw=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("rank / count")
    ax.set_ylabel("value / max")
    ax.legend(fontsize=7)


def write_report(expansion, out_dir: str, measured_dir: str | None = None,
                 top_singular: int = 32) -> dict:
    """Writes `statistics.json`, `sums.png` and `degrees.png` into `out_dir`; returns the stats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fractal_tfds.io import read_expansion
    from fractal_tfds.statistics import measure, std_over_mean

    os.makedirs(out_dir, exist_ok=True)
    x = expansion
    stats = x.statistics(top_singular=top_singular)
    r = x.ratings.matrix
    vals = x.entry_values.astype(np.float64)
    real_rows = np.bincount(x.entry_rows, vals, x.m)
    real_cols = np.bincount(x.entry_cols, vals, x.n)
    measured = None
    if measured_dir is not None:
        measured = measure(read_expansion(measured_dir), x.num_users, x.num_items)
        stats["measured"] = {
            "num_interactions": measured["num_interactions"],
            "user_degree_std_over_mean": float(std_over_mean(measured["row_counts"])),
            "item_degree_std_over_mean": float(std_over_mean(measured["column_counts"])),
        }
        stats["measured"]["user_degree_spread_ratio"] = (
            stats["measured"]["user_degree_std_over_mean"]
            / stats["source_user_degree"]["std_over_mean"])
        stats["measured"]["item_degree_spread_ratio"] = (
            stats["measured"]["item_degree_std_over_mean"]
            / stats["source_item_degree"]["std_over_mean"])

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    f = x.block_weight.astype(np.float64) * x.expected_counts / x.nnz
    rows = [("R", real_rows), ("R^", f.sum(1)), ("R~ analytic", x.row_sums())]
    cols = [("R", real_cols), ("R^", f.sum(0)), ("R~ analytic", x.column_sums())]
    if measured is not None:
        rows.append(("R~ measured", measured["row_sums"]))
        cols.append(("R~ measured", measured["column_sums"]))
    _rank_plot(axes[0], rows, "row sums (user engagement)")
    _rank_plot(axes[1], cols, "column sums (item popularity)")
    _rank_plot(axes[2], [("R", np.array(stats["source_singular_values"])),
                         ("R^", np.linalg.svd(f, compute_uv=False)),
                         ("R~ analytic", np.array(stats["singular_values"]))],
               "singular values")
    fig.suptitle(f"{x.ratings.source} at {x.m2}x{x.n2}, preset {x.preset}", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "sums.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    udeg = measured["row_counts"] if measured is not None else x.row_sums("count")
    ideg = measured["column_counts"] if measured is not None else x.column_sums("count")
    tag = "measured" if measured is not None else "expected"
    _rank_plot(axes[0], [("R", np.diff(r.indptr)), (f"R~ {tag}", udeg)],
               f"user degrees (spread ratio {std_over_mean(udeg) / std_over_mean(np.diff(r.indptr)):.2f})")
    real_ideg = np.bincount(r.indices, minlength=x.n)
    _rank_plot(axes[1], [("R", real_ideg), (f"R~ {tag}", ideg)],
               f"item degrees (spread ratio {std_over_mean(ideg) / std_over_mean(real_ideg):.2f})")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "degrees.png"), dpi=110)
    plt.close(fig)

    with open(os.path.join(out_dir, "statistics.json"), "w") as fh:
        json.dump(stats, fh, indent=1, default=float)
    return stats

