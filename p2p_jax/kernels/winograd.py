"""Winograd's minimal filtering for pix2pix's convolutions.

A stride-1 k x k correlation makes each m x m block of output from a (m+k-1) x (m+k-1)
tile of input. Winograd's F(m x m, k x k) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016; the form cuDNN and oneDNN use) computes that block
with (m+k-1)^2 multiplications per input and output channel instead of m^2 k^2. In
matrix form, with d a tile and g the kernel:

    Y = A^T [(G g G^T) * (B^T d B)] A       (* elementwise)

and across channels the elementwise product becomes (m+k-1)^2 independent GEMMs
[tiles, I] x [I, O]. Every form here uses 5 x 5 tiles, i.e. 25 GEMMs:
  * stride-1 4x4 convs (PatchGAN's conv4): F(2x2, 4x4), 25 multiplications instead of 64;
  * stride-2 4x4 convs: space-to-depth makes them 2x2 stride-1 convs over 4x the input
    channels, F(4x4, 2x2): 25 multiplications per 4x4 output block and channel pair
    instead of 16 pixels x 4 taps = 64;
  * the 4x4 stride-2 transposed conv: its sub-pixel form is a 2x2 stride-1 correlation
    (models/layers.py), F(4x4, 2x2) likewise.
The transforms are exact rational matrices (Toom-Cook with the points 0, 1, -1, 1/2 and
infinity); results differ from the direct sum only by float rounding, a few times larger
than a reordered sum (tests/test_layers.py bounds it).

Gradients are JAX's autodiff of these functions, which is Winograd again: the kernel
gradient is 25 GEMMs [I, tiles] x [tiles, O] in the transformed domain, the input
gradient 25 GEMMs [tiles, O] x [O, I] followed by the transposed input transform.
Autodiff keeps the transformed input and kernel for the backward pass (PatchGAN's conv4
at batch 1: 6.5 and 13 MB).

Accuracy: each op is within ~1e-5 of the direct sum (a few times the GEMM forms' error).
In the paper's networks at 256 px the parameter gradients, compared with float64 under the
same ReLU / LeakyReLU slopes, are within 1e-5 (D) and 1e-4 (G) of it, about twice the
GEMM forms' difference (benchmarks/gradient_accuracy.py). Compared without matching the
slopes, any two forms (XLA's conv and float64 too) can differ by a few % in some kernel
gradient: an activation input within rounding of 0 takes the other slope, and which ones
do depends on all the rounding before it (benchmarks/README.md, "Winograd").
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

INPUT_TILE = 5  # input pixels per tile side: F(2x2, 4x4), F(3x3, 3x3), F(4x4, 2x2). The
# same 5 interpolation points for every kernel size; bigger tiles would need fewer
# multiplications, but their transforms amplify rounding more (for D's conv4, 6-pixel
# tiles: 2-3x the error of 5-pixel tiles at about the same speed on CPU).


# Interpolation points in the order they are taken; small rationals keep the transforms'
# entries small, which bounds the rounding error.
_POINTS = (0, 1, -1, 0.5, -0.5, 2, -2)


@functools.lru_cache(maxsize=None)
def transforms(m: int, r: int):
  """(A^T [m, n], G [n, r], B^T [n, n]) of F(m, r) correlation, n = m + r - 1, in float64.

  A^T evaluates at the points (and reads the leading coefficient at infinity), G does so
  divided by the Lagrange denominators; B^T is then the unique matrix that makes
  A^T [(G g) * (B^T d)] the correlation of d with g, solved for in float64 and checked.
  """
  n = m + r - 1
  if n - 1 > len(_POINTS):
    raise NotImplementedError(f'Winograd F({m}, {r}) needs {n - 1} finite points')
  p = np.asarray(_POINTS[:n - 1], np.float64)
  a_t, g = np.zeros((m, n)), np.zeros((n, r))
  for j, pj in enumerate(p):
    denominator = np.prod([pj - pl for l, pl in enumerate(p) if l != j])
    a_t[:, j] = pj ** np.arange(m)
    g[j] = pj ** np.arange(r) / denominator
  a_t[m - 1, n - 1] = g[n - 1, r - 1] = 1.0  # the point at infinity
  # y_i = sum_j a_t[i, j] (g @ w)_j (b_t @ d)_j must equal sum_k d[i + k] w[k] for every
  # d and w: one linear equation per (i, k, l) in the entries of b_t.
  system = np.einsum('ij,jk->ikj', a_t, g).reshape(m * r, n)
  target = np.zeros((m, r, n))
  for i in range(m):
    for k in range(r):
      target[i, k, i + k] = 1.0
  b_t = np.linalg.lstsq(system, target.reshape(m * r, n), rcond=None)[0]
  if not np.allclose(system @ b_t, target.reshape(m * r, n), atol=1e-12):
    raise RuntimeError(f'no exact Winograd F({m}, {r}) for points {p}')
  return a_t, g, b_t


@functools.lru_cache(maxsize=None)
def _transforms_2d(m: int, k: int):
  """The 2-D transforms (A^T x A^T, G x G, B^T x B^T) in float32, built once per (m, k).

  Once, so that every trace embeds the same constants (benchmarks/README.md, "Winograd",
  tells what an earlier per-call version showed)."""
  return tuple(np.kron(a, a).astype(np.float32) for a in transforms(m, k))


def _out_tile(k: int) -> int:
  return max(2, INPUT_TILE - k + 1)


def conv2d_s1(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """Stride-1 NHWC convolution with symmetric zero padding by Winograd F(m x m, k x k).

  x: [N, H, W, I]; kernel: [k, k, I, O] (HWIO); returns [N, H + 2p - k + 1, ..., O].
  """
  n_img, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  m = _out_tile(k)
  t = m + k - 1  # input tile side
  ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
  th, tw = -(-ho // m), -(-wo // m)  # tiles per column / row; the last may overhang
  xp = jnp.pad(x, ((0, 0), (padding, m * th + k - 1 - h - padding),
                   (padding, m * tw + k - 1 - w - padding), (0, 0)))
  # Tiles overlap by k - 1: tap (i, j) of every tile is one strided slice.
  taps = jnp.stack([jax.lax.slice(xp, (0, i, j, 0),
                                  (n_img, i + m * (th - 1) + 1, j + m * (tw - 1) + 1, cin),
                                  (1, m, m, 1))
                    for i in range(t) for j in range(t)])  # [t*t, N, th, tw, I]
  dtype = x.dtype
  out_2d, kernel_2d, in_2d = _transforms_2d(m, k)
  v = jnp.dot(in_2d.astype(dtype), taps.reshape(t * t, -1))
  u = jnp.dot(kernel_2d.astype(dtype), kernel.reshape(k * k, cin * cout))
  products = jax.lax.dot_general(v.reshape(t * t, n_img * th * tw, cin),
                                 u.reshape(t * t, cin, cout),
                                 (((2,), (1,)), ((0,), (0,))))  # t*t GEMMs
  y = jnp.dot(out_2d.astype(dtype), products.reshape(t * t, -1))
  y = y.reshape(m, m, n_img, th, tw, cout).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(n_img, m * th, m * tw, cout)[:, :ho, :wo]


def conv2d_s2(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """Stride-2 NHWC convolution (even kernel size k) by Winograd.

  Space-to-depth makes it a stride-1 (k/2) x (k/2) convolution over 4I channels: output
  pixel o reads padded input 2o + 2u + a, i.e. block o + u, phase a. pix2pix's 4x4 convs
  become F(4x4, 2x2) over 4I channels: per 4x4 output block and original channel pair
  4 x 25 = 100 multiplications instead of 16 pixels x 16 taps = 256.
  """
  n_img, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  if k % 2:
    raise NotImplementedError(f'Winograd stride-2 conv needs an even kernel, got {k}')
  kb = k // 2
  ho, wo = (h + 2 * padding - k) // 2 + 1, (w + 2 * padding - k) // 2 + 1
  hp, wp = 2 * (ho + kb - 1), 2 * (wo + kb - 1)  # the padded input the outputs read
  # Negative high padding drops a last row / column that no output reads.
  xp = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (padding, hp - h - padding, 0),
                                              (padding, wp - w - padding, 0), (0, 0, 0)))
  blocks = xp.reshape(n_img, hp // 2, 2, wp // 2, 2, cin).transpose(0, 1, 3, 2, 4, 5)
  blocks = blocks.reshape(n_img, hp // 2, wp // 2, 4 * cin)
  # kernel[2u + a, 2v + b, i, o] -> [u, v, (a, b, i), o].
  kernel = kernel.reshape(kb, 2, kb, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  return conv2d_s1(blocks, kernel.reshape(kb, kb, 4 * cin, cout), 0)
