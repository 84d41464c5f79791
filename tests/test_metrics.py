"""Metrics on hand-made images whose values are known in closed form."""

import math

import numpy as np
import pytest

from p2p_jax import metrics


def _const(value, shape=(1, 16, 16, 3)):
  return np.full(shape, value, np.float32)


def test_identical_images_l1_zero_psnr_capped_ssim_one():
  rng = np.random.default_rng(0)
  a = rng.uniform(-1, 1, (2, 24, 20, 3)).astype(np.float32)
  m = {k: np.asarray(v) for k, v in metrics.all_metrics(a, a).items()}
  np.testing.assert_allclose(m['l1'], 0.0)
  # Documented cap, never inf: averages over a split stay finite.
  np.testing.assert_array_equal(m['psnr'], metrics.PSNR_CAP_DB)
  assert np.all(np.isfinite(m['psnr']))
  np.testing.assert_allclose(m['ssim'], 1.0, atol=1e-6)


def test_l1_is_in_minus_one_one_space_and_psnr_in_unit_space():
  black, gray = _const(-1.0), _const(0.0)  # [0, 1] values 0 and 0.5
  np.testing.assert_allclose(metrics.l1(black, gray), [1.0])
  # MSE in [0, 1] space = 0.25 -> PSNR = 10 log10(1 / 0.25).
  np.testing.assert_allclose(metrics.psnr(black, gray), [10 * math.log10(4)], rtol=1e-6)
  # One pixel of 16*16*3 values off by one 8-bit level: far below the cap.
  a = _const(0.0)
  b = a.copy()
  b[0, 3, 4, 1] += 2 / 255
  expected = 10 * math.log10(16 * 16 * 3 * 255 ** 2)
  np.testing.assert_allclose(metrics.psnr(a, b), [expected], rtol=1e-5)
  assert expected < metrics.PSNR_CAP_DB


def test_ssim_of_constant_images_is_the_luminance_term():
  # Constant images: no variance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1).
  mx, my = 0.25, 0.75
  c1 = (metrics.SSIM_K1 * 1.0) ** 2
  expected = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
  got = metrics.ssim(_const(2 * mx - 1), _const(2 * my - 1))
  np.testing.assert_allclose(got, [expected], rtol=1e-5)


def test_ssim_is_per_image_and_averaged_over_channels():
  rng = np.random.default_rng(1)
  a = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  b = a.copy()
  b[1, ..., 2] = rng.uniform(-1, 1, (16, 16))  # only image 1, only its blue channel
  s = np.asarray(metrics.ssim(a, b))
  np.testing.assert_allclose(s[0], 1.0, atol=1e-6)
  blue = float(metrics.ssim(a[1:, ..., 2:], b[1:, ..., 2:])[0])
  np.testing.assert_allclose(s[1], (1.0 + 1.0 + blue) / 3, rtol=1e-5)
  assert blue < 0.5


@pytest.mark.parametrize('channels', [1, 3])
def test_ssim_and_psnr_match_scikit_image(channels):
  skm = pytest.importorskip('skimage.metrics')
  rng = np.random.default_rng(channels)
  a = rng.uniform(-1, 1, (2, 40, 57, channels)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.4, a.shape), -1, 1).astype(np.float32)
  m = metrics.all_metrics(a, b)
  for i in range(2):
    x, y = (a[i] + 1) / 2, (b[i] + 1) / 2
    ref = skm.structural_similarity(x, y, data_range=1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, channel_axis=-1)
    np.testing.assert_allclose(m['ssim'][i], ref, atol=1e-5)
    np.testing.assert_allclose(m['psnr'][i], skm.peak_signal_noise_ratio(x, y, data_range=1),
                               rtol=1e-5)


def test_bad_shapes_are_rejected():
  with pytest.raises(ValueError, match='same shape'):
    metrics.l1(_const(0.0), _const(0.0, (1, 16, 16, 1)))
  with pytest.raises(ValueError, match='at least 11x11'):
    metrics.ssim(_const(0.0, (1, 8, 32, 3)), _const(0.0, (1, 8, 32, 3)))
