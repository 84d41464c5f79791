"""Image metrics of pix2pix evaluation: L1, PSNR and SSIM, per image.

Conventions (all functions take batches [N, H, W, C] of images in [-1, 1], the model's
space, and return one value per image, shape [N]):
  * L1: mean absolute difference in [-1, 1] space, the quantity the generator is trained
    on (so it is twice the L1 of the same images in [0, 1]).
  * PSNR and SSIM: on the images mapped to [0, 1] (data_range 1), as image-quality papers
    and scikit-image report them, computed on the float output (before 8-bit rounding).
  * PSNR of identical images would be infinite; it is capped at PSNR_CAP_DB = 100 dB, so
    averages stay finite. Two different 8-bit images are at most ~ 48 dB + 10 log10(H W C)
    apart, far below the cap, so only (nearly) identical pairs reach it; `evaluate` reports
    how many did.
  * SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population
    (not sample) covariances, over the 'valid' region (no padding), computed per channel and
    averaged over channels and pixels. This equals scikit-image's
    structural_similarity(a, b, data_range=1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, channel_axis=-1) (tests/test_metrics.py checks it when
    scikit-image is installed). Images need height and width >= 11.

Pure jnp functions: they can be jitted, and numpy arrays may be passed in.
"""

import jax
import jax.numpy as jnp
import numpy as np

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def to_unit_range(x):
  """[-1, 1] -> [0, 1] (clipped: the generator's tanh never leaves it, inputs might)."""
  return jnp.clip((jnp.asarray(x, jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def _check_pair(a, b, name):
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f'{name} needs two batches of the same shape [N, H, W, C], got '
                     f'{tuple(a.shape)} and {tuple(b.shape)}')


def l1(a, b) -> jax.Array:
  """Mean |a - b| per image, in [-1, 1] space (the training loss's units)."""
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  _check_pair(a, b, 'l1')
  return jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))


def psnr(a, b, cap_db: float = PSNR_CAP_DB) -> jax.Array:
  """Peak signal-to-noise ratio per image in dB, on [0, 1] images, capped at `cap_db`."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_pair(a, b, 'psnr')
  mse = jnp.mean((to_unit_range(a) - to_unit_range(b)) ** 2, axis=(1, 2, 3))
  # 10 log10(1 / mse), with mse floored where it would exceed the cap (mse = 0 included).
  floor = 10.0 ** (-cap_db / 10.0)
  return jnp.minimum(-10.0 * jnp.log10(jnp.maximum(mse, floor)), cap_db)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian of `size` taps (the SSIM window is its outer product)."""
  r = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-0.5 * (r / sigma) ** 2)
  return (g / g.sum()).astype(np.float32)


def _filter(x, g):
  """Valid separable Gaussian filtering of [N, H, W, C], each channel on its own."""
  n, h, w, c = x.shape
  planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
  k = g.shape[0]
  dn = ('NHWC', 'HWIO', 'NHWC')
  hp = jax.lax.Precision.HIGHEST  # Default CPU/TPU precision may use bf16 passes.
  planes = jax.lax.conv_general_dilated(planes, g.reshape(k, 1, 1, 1), (1, 1), 'VALID',
                                        dimension_numbers=dn, precision=hp)
  planes = jax.lax.conv_general_dilated(planes, g.reshape(1, k, 1, 1), (1, 1), 'VALID',
                                        dimension_numbers=dn, precision=hp)
  _, h2, w2, _ = planes.shape
  return jnp.transpose(planes.reshape(n, c, h2, w2), (0, 2, 3, 1))


def ssim(a, b) -> jax.Array:
  """Structural similarity per image on [0, 1] images (see module docstring); 1 = same."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  _check_pair(a, b, 'ssim')
  if min(a.shape[1], a.shape[2]) < SSIM_WINDOW:
    raise ValueError(f'ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, '
                     f'got {a.shape[1]}x{a.shape[2]}')
  x, y = to_unit_range(a), to_unit_range(b)
  g = jnp.asarray(gaussian_window())
  mx, my = _filter(x, g), _filter(y, g)
  vx = _filter(x * x, g) - mx * mx
  vy = _filter(y * y, g) - my * my
  cxy = _filter(x * y, g) - mx * my
  c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # data_range = 1
  s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return jnp.mean(s, axis=(1, 2, 3))


@jax.jit
def all_metrics(output, target) -> dict:
  """{'l1', 'psnr', 'ssim'}: per-image arrays [N] for a batch of outputs and targets."""
  return {'l1': l1(output, target), 'psnr': psnr(output, target),
          'ssim': ssim(output, target)}
