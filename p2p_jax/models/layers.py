"""The convolutions of pix2pix, in one place so that their implementation can be swapped.

All of pix2pix is built from three operations with PyTorch's geometry:
  * `Conv`: a k x k convolution with stride s and symmetric zero padding p (4x4, s2, p1 in
    both networks; s1 for the last two PatchGAN layers; 1x1 for the PixelGAN).
  * `ConvTranspose4x4`: PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1), which
    doubles the spatial size.
Parameters keep the standard HWIO layout (kernel [kh, kw, in, out]) whatever computes them,
so checkpoints, export and parameter counts do not depend on the implementation.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.models import winograd

# pix2pix initialises every conv weight with N(0, 0.02) and every bias with 0.
conv_init = nn.initializers.normal(stddev=0.02)


def bn_scale_init(key, shape, dtype=jnp.float32):
  """BatchNorm scale ~ N(1, 0.02), as the reference's init_weights."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


# ---------------------------------------------------------------- implementations
# Every implementation computes the same function from the same HWIO kernel and differs only
# in which XLA operations do the work (results agree to float32 rounding, see
# tests/test_layers.py):
#   'xla'           the plain convolution op, gradients by JAX's autodiff.
#   'gemm'          im2col + one matrix multiply (GEMM); its gradients are GEMMs too.
#   'xla_gemmgrad'  forward by the plain op, gradients by the GEMM form (custom VJP).
#   'xla_convgrad'  forward by the plain op; for the transposed conv, the input gradient
#                   as an ordinary stride-2 conv and the kernel gradient as that conv's
#                   GEMM-form kernel gradient (custom VJP); for Conv the same as 'xla'.
#   'xla_adjoint'   forward by the plain op; for the transposed conv, both gradients by
#                   XLA's own ops for the stride-2 conv it is the adjoint of: the input
#                   gradient is that conv, the kernel gradient its kernel gradient (the
#                   pattern XLA:GPU runs as a cuDNN weight-gradient kernel, PyTorch's form
#                   for ConvTranspose2d) rather than XLA's kernel gradient of the dilated
#                   conv (custom VJP); for Conv the same as 'xla'.
#   'taps'          for the transposed conv, one GEMM per kernel tap on the kernel's own
#                   layout (the 16 taps as one batched GEMM), then the taps added into
#                   place (col2im); for Conv the same as 'gemm'.
#   'winograd'      Winograd's minimal filtering (models/winograd.py): stride-1 convs as
#                   F(2x2, 4x4) (25 multiplications per 2x2 output block and channel pair
#                   instead of 64), stride-2 convs and the transposed conv's sub-pixel
#                   2x2 correlation as F(4x4, 2x2) (25 instead of 64 per 4x4 block);
#                   gradients by autodiff. float32 only (its transforms amplify rounding,
#                   too much for bfloat16's 8-bit significand): other dtypes and 1x1 or
#                   odd-sized strided kernels run 'gemm'.
#   'auto'          the plain op on GPU/TPU; on CPU, per layer, the measured fastest form.
# Why: XLA:CPU runs lhs-dilated convolutions on a slow path: the kernel gradient of the
# transposed conv (about 1 GFLOP/s, several seconds per U-Net layer) and, growing with the
# batch, the input gradient of strided convs (0.4 s of a batch-4 step); it runs convolutions
# whose kernel is much bigger than their input (the U-Net's innermost layers, at 1x1 to
# 8x8 pixels) by swapping operands and reversing the kernel, tens of ms per layer; GEMMs
# run at the machine's matmul speed. Custom VJPs keep only (x, kernel) as residuals, so the
# GEMM patches are rebuilt in the backward pass rather than stored. Measurements:
# benchmarks/README.md.
CONV_IMPLS = ('auto', 'xla', 'gemm', 'xla_gemmgrad', 'xla_convgrad', 'xla_adjoint', 'taps',
              'winograd')
# CPU choice ('auto'), measured per layer at 256x256, forward + both gradients, batch 1 and
# 4: GEMM forms for every layer whose GEMM has enough output columns (>= 64 channels) to
# amortise its im2col copy: 'gemm' for the transposed convs and the convs at < 128 pixels
# (their patches, kept for the backward pass, are small), 'xla_gemmgrad' for the convs at
# >= 128 pixels (XLA's forward, patches rebuilt in the backward pass). XLA's own ops for
# the layers with few output channels: D's last conv (1) and, with its input gradient as a
# plain conv and its kernel gradient in GEMM form ('xla_convgrad'), G's output transposed
# conv (3). The U-Net's innermost transposed convs (input rows batch x height x width
# <= 64: 1x1 to 4x4 pixels at batch 1-4) read a 16-32 MB kernel for a few rows of input:
# 'taps' uses the kernel as it is stored, where the sub-pixel GEMM first copies it into its
# own layout. 'winograd' for the convs whose GEMMs are big enough to amortise its
# transforms: every stride-1 conv (PatchGAN's 4x4 at 32x32 pixels, 256 -> 512 channels,
# over a third of a training step's FLOPs) and the stride-2 convs with >= 64 input
# channels and >= 1024 output pixels x batch; below that its kernel transform (the kernel
# 6.25x over for a stride-2 conv) costs more than it saves. Not for the transposed convs:
# faster alone (forward + gradients, dec6-dec7), but slower within the training step
# (batch 4: 0.97 img/s with them, 1.36 without) with twice the scratch memory. Its
# rounding is about 2x the GEMM forms' (paper-size gradients against float64 with the same
# ReLU pattern: 1e-5 for D, 1e-4 for G, every form alike); a LeakyReLU / ReLU input
# within rounding of 0 can take the other slope under any two forms, which moves a kernel
# gradient by up to a few % (XLA's own conv against float64 likewise). Measurements:
# benchmarks/README.md.
CPU_CONV_GEMM_MIN_FEATURES = 64
CPU_CONV_RECOMPUTE_MIN_SIZE = 128
CPU_CONVT_GEMM_MIN_FEATURES = 64
CPU_CONVT_TAPS_MAX_ROWS = 64
CPU_WINOGRAD_MIN_ROWS = 1024
CPU_WINOGRAD_MIN_IN_FEATURES = 64


def _known(dim):
  """An int dimension as it is; None for None and for symbolic (polymorphic) dimensions."""
  return dim if isinstance(dim, (int, np.integer)) else None


def resolve_impl(impl: str, transpose: bool, out_features: int, size: int | None = None,
                 backend: str | None = None, rows: int | None = None,
                 stride: int = 2, kernel_size: int = 4,
                 in_features: int | None = None) -> str:
  """The concrete implementation of one layer: 'auto' resolved for the backend and shape.

  size: the input's spatial size (height; None when unknown, i.e. large); used for Conv.
  rows: the rows of the layer's direct GEMM, batch x height x width of the output of a
    Conv and of the input of a transposed conv (None when unknown, i.e. large).
  stride, kernel_size: Conv's (the transposed conv's are fixed).
  in_features: Conv's input channels (None when unknown).
  Symbolic sizes (shape-polymorphic export) count as unknown: they cannot be compared, and
  unknown sizes never choose 'winograd' or 'taps'.
  """
  size, rows = _known(size), _known(rows)
  if impl not in CONV_IMPLS:
    raise ValueError(f'model.conv_impl must be one of {CONV_IMPLS}, got {impl!r}')
  if impl != 'auto':
    return impl
  if (backend or jax.default_backend()) != 'cpu':
    return 'xla'
  if transpose:
    if out_features < CPU_CONVT_GEMM_MIN_FEATURES:
      return 'xla_convgrad'
    return 'taps' if rows is not None and rows <= CPU_CONVT_TAPS_MAX_ROWS else 'gemm'
  if out_features < CPU_CONV_GEMM_MIN_FEATURES:
    return 'xla'
  wide = in_features is not None and in_features >= CPU_WINOGRAD_MIN_IN_FEATURES
  if kernel_size > 1 and rows is not None and (
      stride == 1 or (wide and rows >= CPU_WINOGRAD_MIN_ROWS)):
    return 'winograd'
  large = size is None or size >= CPU_CONV_RECOMPUTE_MIN_SIZE
  return 'xla_gemmgrad' if large else 'gemm'


_DN = ('NHWC', 'HWIO', 'NHWC')


def _pad_hw(x: jax.Array, p: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
  """[..., K] x [K, O] as one 2-D GEMM (XLA:CPU's fast path)."""
  lead = a.shape[:-1]
  return jnp.dot(a.reshape(-1, a.shape[-1]), b).reshape(lead + (b.shape[-1],))


def _conv_xla(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride),
                                      ((padding, padding), (padding, padding)),
                                      dimension_numbers=_DN)


def _conv_gemm(x, kernel, stride, padding):
  # Patches [N, Ho, Wo, k*k*I] in (kh, kw, I) order, the kernel's own row-major order, so
  # the HWIO kernel is the [k*k*I, O] matrix without a copy.
  n, h, w, i = x.shape
  k, o = kernel.shape[0], kernel.shape[-1]
  xp = _pad_hw(x, padding)
  ho = (h + 2 * padding - k) // stride + 1
  wo = (w + 2 * padding - k) // stride + 1
  taps = [jax.lax.slice(xp, (0, di, dj, 0),
                        (n, di + stride * (ho - 1) + 1, dj + stride * (wo - 1) + 1, i),
                        (1, stride, stride, 1))
          for di in range(k) for dj in range(k)]
  patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
  return _matmul(patches, kernel.reshape(k * k * i, o))


def _convt_xla(x, kernel):
  # Zeros between input pixels (stride 2), k - 1 - p = 2 of padding, stride-1 4x4 conv.
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((2, 2), (2, 2)),
                                      lhs_dilation=(2, 2), dimension_numbers=_DN)


def _correlate_2x2_gemm(xp, kernel):
  """Valid 2x2 correlation of xp with a [2, 2, I, O] kernel as one GEMM (im2col)."""
  n, h, w, _ = xp.shape
  patches = jnp.concatenate([xp[:, u:u + h - 1, v:v + w - 1, :]
                             for u in range(2) for v in range(2)], axis=-1)
  return _matmul(patches, kernel.reshape(-1, kernel.shape[-1]))


def _convt_subpixel(x, kernel, correlate_2x2=_correlate_2x2_gemm):
  # Sub-pixel form: output pixel (2m + a, 2n + b) only meets kernel taps (2u + a, 2v + b),
  # u, v in {0, 1}, applied to xp[m + a + u, n + b + v] (xp = x padded by 1). All four
  # phases (a, b) are one 2x2 correlation of xp with a [2, 2, I, 2*2*O] kernel;
  # depth-to-space then reads phase (a, b) at offset (a, b).
  n, h, w, i = x.shape
  o = kernel.shape[-1]
  # kernel[2u + a, 2v + b, i, o] -> [u, v, i, (a, b, o)].
  phases = kernel.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, i, 4 * o)
  z = correlate_2x2(_pad_hw(x, 1), phases).reshape(n, h + 1, w + 1, 2, 2, o)
  rows = [jnp.stack([z[:, a:a + h, b:b + w, a, b, :] for b in range(2)], axis=3)
          for a in range(2)]  # each [N, H, W, 2 (b), O]
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, o)


def _convt_winograd(x, kernel):
  return _convt_subpixel(x, kernel, lambda xp, k: winograd.conv2d_s1(xp, k, 0))


def _convt_taps(x, kernel):
  # Output pixel 2m + 2 - kh (and likewise in width) receives x[m] @ kernel[kh, kw] (the
  # definition above with the kernel unflipped). One batched GEMM gives every tap's
  # contribution from the [16, I, O] view of the HWIO kernel (no copy of it); each tap is
  # then placed with stride 2 by interior padding on a canvas one pixel wider on every side.
  # Taps are summed in float32 (one rounding at the end, as inside a GEMM) for bfloat16.
  n, h, w, i = x.shape
  o = kernel.shape[-1]
  rows = jnp.broadcast_to(x.reshape(1, n * h * w, i), (16, n * h * w, i))
  taps = jax.lax.dot_general(rows, kernel.reshape(16, i, o), (((2,), (1,)), ((0,), (0,))),
                             preferred_element_type=jnp.float32)
  taps = taps.reshape(4, 4, n, h, w, o)
  zero = jnp.zeros((), taps.dtype)
  canvas = sum(jax.lax.pad(taps[kh, kw], zero, ((0, 0, 0), (3 - kh, kh, 1), (3 - kw, kw, 1),
                                                (0, 0, 0)))
               for kh in range(4) for kw in range(4))
  return canvas[:, 1:2 * h + 1, 1:2 * w + 1, :].astype(x.dtype)


def _flip_io(kernel):
  """[kh, kw, I, O] -> spatially flipped [kh, kw, O, I]; its own inverse."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def _convt_grads_as_adjoint(kernel_grad_conv):
  """grads(x, kernel, g) of the transposed conv T through the stride-2 conv S it is the
  adjoint of: <g, T(x, K)> = <S(g, flip_io(K)), x>, so dx = S(g, flip_io(K)) and dK is
  flip_io of S's kernel gradient with input g and cotangent x, S taken as
  kernel_grad_conv for that gradient."""
  def grads(x, kernel, g):
    v = _flip_io(kernel)
    dv = jax.vjp(lambda v: kernel_grad_conv(g, v, 2, 1), v)[1](x)[0]
    return _conv_xla(g, v, 2, 1), _flip_io(dv)
  return grads


# 'xla_convgrad': S's kernel gradient in GEMM form (patches of g transposed times x): on
# CPU, XLA's own contracts over the batch as its feature dimension, 9 ms at batch 1 but
# 190 ms at batch 4 for G's output layer. 'xla_adjoint': XLA's own, which on GPU is the
# weight-gradient kernel of an ordinary strided conv.
_CONVT_ADJOINT_GRADS = {'xla_convgrad': _convt_grads_as_adjoint(_conv_gemm),
                        'xla_adjoint': _convt_grads_as_adjoint(_conv_xla)}


def _with_custom_grads(forward, grads):
  """f(x, kernel) computed by `forward`, differentiated by grads(x, kernel, g)."""
  @jax.custom_vjp
  def f(x, kernel):
    return forward(x, kernel)

  def f_fwd(x, kernel):
    return forward(x, kernel), (x, kernel)

  def f_bwd(res, g):
    return grads(*res, g)

  f.defvjp(f_fwd, f_bwd)
  return f


def _vjp_grads(fn):
  """grads(x, kernel, g) by JAX's autodiff of fn (its unused forward output is dead code)."""
  return lambda x, kernel, g: jax.vjp(fn, x, kernel)[1](g)


def conv2d(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
           impl: str = 'xla') -> jax.Array:
  """NHWC convolution with symmetric zero padding (PyTorch's Conv2d geometry).

  x: [N, H, W, I]; kernel: [k, k, I, O]; returns [N, (H + 2p - k) // s + 1, ..., O].
  impl: one of CONV_IMPLS.
  """
  n, h, w, i = x.shape
  k, o = kernel.shape[0], kernel.shape[-1]
  out_rows = n * ((h + 2 * padding - k) // stride + 1) * ((w + 2 * padding - k) // stride + 1)
  impl = resolve_impl(impl, transpose=False, out_features=o, size=h, rows=out_rows,
                      stride=stride, kernel_size=k, in_features=i)
  if impl == 'winograd' and k > 1 and x.dtype == jnp.float32:
    if stride == 1:
      return winograd.conv2d_s1(x, kernel, padding)
    if stride == 2 and k % 2 == 0:
      return winograd.conv2d_s2(x, kernel, padding)
  plain = lambda x, k: _conv_xla(x, k, stride, padding)
  gemm = lambda x, k: _conv_gemm(x, k, stride, padding)
  if impl in ('xla', 'xla_convgrad', 'xla_adjoint'):  # its gradients already are plain convs
    return plain(x, kernel)
  if impl in ('gemm', 'taps', 'winograd'):
    return gemm(x, kernel)
  return _with_custom_grads(plain, _vjp_grads(gemm))(x, kernel)


def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array, impl: str = 'xla') -> jax.Array:
  """PyTorch's ConvTranspose2d(k=4, s=2, p=1) on NHWC input: [N,H,W,I] -> [N,2H,2W,O].

  Definition ('xla'): the dilated convolution with zeros between input pixels (stride 2),
  k - 1 - p = 2 zeros of padding on each side, then a stride-1 4x4 convolution. The kernel
  is used unflipped (as flax.linen.ConvTranspose does); flipping it gives PyTorch's layout.
  impl: one of CONV_IMPLS.
  """
  impl = resolve_impl(impl, transpose=True, out_features=kernel.shape[-1],
                      rows=x.shape[0] * x.shape[1] * x.shape[2])
  if impl == 'winograd' and x.dtype == jnp.float32:
    return _convt_winograd(x, kernel)
  if impl == 'xla':
    return _convt_xla(x, kernel)
  if impl in ('gemm', 'winograd'):  # 'winograd' for dtypes other than float32
    return _convt_subpixel(x, kernel)
  if impl == 'taps':
    return _convt_taps(x, kernel)
  grads = _vjp_grads(_convt_subpixel) if impl == 'xla_gemmgrad' else _CONVT_ADJOINT_GRADS[impl]
  return _with_custom_grads(_convt_xla, grads)(x, kernel)


class Conv(nn.Module):
  """k x k convolution, stride s, zero padding p, with an optional bias.

  impl: how it is computed (one of CONV_IMPLS); parameters and results do not depend on it.
  """
  features: int
  kernel_size: int = 4
  stride: int = 2
  padding: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('kernel', conv_init, (k, k, x.shape[-1], self.features), jnp.float32)
    y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.padding,
               self.impl)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y


class ConvTranspose4x4(nn.Module):
  """4x4 transposed convolution, stride 2, padding 1: doubles height and width.

  impl: see `Conv`.
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', conv_init, (4, 4, x.shape[-1], self.features), jnp.float32)
    y = conv_transpose_4x4_s2(x.astype(self.dtype), kernel.astype(self.dtype), self.impl)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y


def norm_layer(norm: str, *, train: bool, axis_name: str | None, dtype: Any, name: str):
  """Returns the normalisation module for `norm`, or None for 'none'.

  BatchNorm matches PyTorch's BatchNorm2d (momentum 0.1 -> flax momentum 0.9, eps 1e-5);
  instance norm matches the reference's InstanceNorm2d(affine=False).
  """
  if norm == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        axis_name=axis_name, dtype=dtype, param_dtype=jnp.float32,
                        scale_init=bn_scale_init, name=name)
  if norm == 'instance':
    return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                           name=name)
  if norm == 'none':
    return None
  raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")


def uses_bias(norm: str) -> bool:
  """Convs followed by BatchNorm carry no bias (BN's shift replaces it); others do."""
  return norm != 'batch'
