"""Algorithm 2: spectrum preserved, orthonormal factors, explicit options, clear errors."""

import numpy as np
import pytest
import scipy.sparse as sp

from fractal_tfds.reduce import leading_svd, nearest_orthonormal, parse_factors, reduce_ratings


@pytest.mark.parametrize("shape", [(16, 32), (32, 16), (4, 4)])
def test_real_spectrum_and_orthogonality(real_ratings, shape):
    red = reduce_ratings(real_ratings, shape, seed=0)
    k = min(shape)
    s_hat = np.linalg.svd(red.matrix, compute_uv=False)[:k]
    dense_top = np.linalg.svd(real_ratings.matrix.toarray(), compute_uv=False)[:k]
    np.testing.assert_allclose(s_hat * red.scale, dense_top, rtol=1e-5)
    np.testing.assert_allclose(red.singular_values, dense_top, rtol=1e-5)
    assert np.abs(red.u_tilde.T @ red.u_tilde - np.eye(k)).max() < 1e-6
    assert np.abs(red.v_tilde @ red.v_tilde.T - np.eye(k)).max() < 1e-6
    assert red.matrix.max() - red.matrix.min() == pytest.approx(1.0)
    assert red.keep_prob.max() == pytest.approx(1.0) and red.keep_prob.min() >= 0


def test_leading_svd_pairs_values_with_vectors():
    rng = np.random.default_rng(0)
    a = sp.random(300, 200, density=0.05, random_state=1, format="csr")
    a.data = rng.normal(size=a.nnz)
    u, s, vt = leading_svd(a, 8, seed=3)
    assert np.all(np.diff(s) <= 0), "descending"
    # Each pair must satisfy A v = s u (a wrong pairing, as in the reference, fails this).
    np.testing.assert_allclose(a @ vt.T, u * s, atol=1e-8)


def test_deterministic_and_resize_options(real_ratings):
    a = reduce_ratings(real_ratings, (8, 16), seed=5)
    b = reduce_ratings(real_ratings, (8, 16), seed=5)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    c = reduce_ratings(real_ratings, (8, 16), seed=5, resize="bilinear")
    assert not np.allclose(a.matrix, c.matrix)
    assert c.diagnostics["resize_options"]["anti_aliasing"] is False
    assert a.diagnostics["resize_options"]["function"] == "resize_local_mean"


def test_nearest_orthonormal_is_polar_factor():
    a = np.random.default_rng(1).normal(size=(10, 4))
    q = nearest_orthonormal(a)
    w, v = np.linalg.eigh(a.T @ a)
    np.testing.assert_allclose(q, a @ (v / np.sqrt(w)) @ v.T, atol=1e-10)  # paper Eq. 5


@pytest.mark.parametrize("text", ["0x4", "16x", "x", "16x32x2", "a x b", "-1x4", ""])
def test_bad_factors(text):
    with pytest.raises(ValueError, match="bad factors"):
        parse_factors(text)


def test_factors_larger_than_r(small_ratings):
    with pytest.raises(ValueError, match="larger than R"):
        reduce_ratings(small_ratings, (41, 2))


def test_save_load_roundtrip(small_ratings, tmp_path):
    red = reduce_ratings(small_ratings, (4, 3))
    red.save(str(tmp_path / "r.npz"))
    back = type(red).load(str(tmp_path / "r.npz"))
    np.testing.assert_array_equal(back.matrix, red.matrix)
    assert back.diagnostics == red.diagnostics
