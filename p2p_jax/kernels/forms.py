"""Alternative computations of the networks' convolutions, equal in exact arithmetic.

Each form computes the function that `p2p_jax.models.layers` defines (`conv2d`: k x k,
stride s, symmetric zero padding p; `conv_transpose_4x4_s2`: PyTorch's ConvTranspose2d(4,
2, 1); `conv_transpose_3x3_s2`: ConvTranspose2d(3, 2, 1, output_padding=1)) from the same
HWIO kernel, and differs only in which XLA operations do the work.
Results agree to float32 rounding (tests/test_kernels.py); what each form is good for, and
the measurements behind it, are in benchmarks/README.md ("How convolutions are computed").

  conv forms  (x, kernel, stride, padding) -> y:  xla, gemm, xla_gemmgrad, winograd
  transposed  (x, kernel) -> y:  xla, subpixel, xla_gemmgrad, xla_convgrad, xla_adjoint,
              taps, winograd
  3x3 transposed (x, kernel) -> y:  convt3_xla, convt3_subpixel, convt3_xla_gemmgrad

Custom VJPs keep only (x, kernel) as residuals, so GEMM patches are rebuilt in the backward
pass rather than stored.
"""

import jax
import jax.numpy as jnp

from p2p_jax.kernels import winograd
from p2p_jax.models import layers

_DN = ('NHWC', 'HWIO', 'NHWC')


def _pad_hw(x: jax.Array, p: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
  """[..., K] x [K, O] as one 2-D GEMM (XLA:CPU's fast path)."""
  lead = a.shape[:-1]
  return jnp.dot(a.reshape(-1, a.shape[-1]), b).reshape(lead + (b.shape[-1],))


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


# ---------------------------------------------------------------- convolutions

conv_xla = layers.conv2d  # the definition: XLA's convolution op, autodiff gradients


def conv_gemm(x, kernel, stride, padding):
  """im2col + one GEMM; its gradients are GEMMs too."""
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


def conv_xla_gemmgrad(x, kernel, stride, padding):
  """XLA's forward; gradients in GEMM form (custom VJP)."""
  plain = lambda x, k: conv_xla(x, k, stride, padding)
  gemm = lambda x, k: conv_gemm(x, k, stride, padding)
  return _with_custom_grads(plain, _vjp_grads(gemm))(x, kernel)


def conv_winograd(x, kernel, stride, padding):
  """Winograd's minimal filtering (winograd.py) for float32 2x2 to 4x4 kernels; `gemm` for
  other dtypes, 1x1 and larger kernels, and odd strided kernels."""
  k = kernel.shape[0]
  if 1 < k <= 4 and x.dtype == jnp.float32:
    if stride == 1:
      return winograd.conv2d_s1(x, kernel, padding)
    if stride == 2 and k % 2 == 0:
      return winograd.conv2d_s2(x, kernel, padding)
  return conv_gemm(x, kernel, stride, padding)


# ---------------------------------------------------------------- transposed convolutions

convt_xla = layers.conv_transpose_4x4_s2  # the definition: an lhs-dilated conv


def _correlate_2x2_gemm(xp, kernel):
  """Valid 2x2 correlation of xp with a [2, 2, I, O] kernel as one GEMM (im2col)."""
  n, h, w, _ = xp.shape
  patches = jnp.concatenate([xp[:, u:u + h - 1, v:v + w - 1, :]
                             for u in range(2) for v in range(2)], axis=-1)
  return _matmul(patches, kernel.reshape(-1, kernel.shape[-1]))


def convt_subpixel(x, kernel, correlate_2x2=_correlate_2x2_gemm):
  """Sub-pixel form: the four output phases as one 2x2 correlation, then depth-to-space."""
  # Output pixel (2m + a, 2n + b) only meets kernel taps (2u + a, 2v + b), u, v in {0, 1},
  # applied to xp[m + a + u, n + b + v] (xp = x padded by 1). All four phases (a, b) are
  # one 2x2 correlation of xp with a [2, 2, I, 2*2*O] kernel; depth-to-space then reads
  # phase (a, b) at offset (a, b).
  n, h, w, i = x.shape
  o = kernel.shape[-1]
  # kernel[2u + a, 2v + b, i, o] -> [u, v, i, (a, b, o)].
  phases = kernel.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, i, 4 * o)
  z = correlate_2x2(_pad_hw(x, 1), phases).reshape(n, h + 1, w + 1, 2, 2, o)
  rows = [jnp.stack([z[:, a:a + h, b:b + w, a, b, :] for b in range(2)], axis=3)
          for a in range(2)]  # each [N, H, W, 2 (b), O]
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, o)


def convt_winograd(x, kernel):
  """The sub-pixel 2x2 correlation by Winograd F(4x4, 2x2); float32 only."""
  if x.dtype != jnp.float32:
    return convt_subpixel(x, kernel)
  return convt_subpixel(x, kernel, lambda xp, k: winograd.conv2d_s1(xp, k, 0))


def convt_taps(x, kernel):
  """One GEMM per kernel tap on the kernel's stored layout, taps added into place."""
  # Output pixel 2m + 2 - kh (and likewise in width) receives x[m] @ kernel[kh, kw] (the
  # definition with the kernel unflipped). One batched GEMM gives every tap's contribution
  # from the [16, I, O] view of the HWIO kernel (no copy of it); each tap is then placed
  # with stride 2 by interior padding on a canvas one pixel wider on every side. Taps are
  # summed in float32 (one rounding at the end, as inside a GEMM) for bfloat16.
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


def _grads_as_adjoint(kernel_grad_conv):
  """grads(x, kernel, g) of the transposed conv T through the stride-2 conv S it is the
  adjoint of: <g, T(x, K)> = <S(g, flip_io(K)), x>, so dx = S(g, flip_io(K)) and dK is
  flip_io of S's kernel gradient with input g and cotangent x, S taken as
  kernel_grad_conv for that gradient."""
  def grads(x, kernel, g):
    v = _flip_io(kernel)
    dv = jax.vjp(lambda v: kernel_grad_conv(g, v, 2, 1), v)[1](x)[0]
    return conv_xla(g, v, 2, 1), _flip_io(dv)
  return grads


def convt_xla_gemmgrad(x, kernel):
  """XLA's forward; gradients of the sub-pixel GEMM form (custom VJP)."""
  return _with_custom_grads(convt_xla, _vjp_grads(convt_subpixel))(x, kernel)


# S's kernel gradient in GEMM form: XLA:CPU's own contracts over the batch as its feature
# dimension. XLA's own (`xla_adjoint`) is, on GPU, the weight-gradient kernel of an ordinary
# strided conv, the form PyTorch uses for ConvTranspose2d.
convt_xla_convgrad = _with_custom_grads(convt_xla, _grads_as_adjoint(conv_gemm))
convt_xla_adjoint = _with_custom_grads(convt_xla, _grads_as_adjoint(conv_xla))


# ---------------------------------------------------------------- 3x3 transposed convolutions

convt3_xla = layers.conv_transpose_3x3_s2  # the definition: an lhs-dilated conv


# Along one axis, output 2m reads x[m] with tap 1; output 2m + 1 reads x[m] with tap 0 and
# x[m + 1] with tap 2 (x[H] = 0: the output padding). [phase][offset] -> tap (None: zero).
_CONVT3_TAPS = ((1, None), (0, 2))


def convt3_subpixel(x, kernel):
  """Sub-pixel form of ConvTranspose2d(3, 2, 1, output_padding=1): the four output phases
  as one 2x2 correlation of x (padded by one zero after) with their kernels side by side,
  then depth-to-space."""
  n, h, w, i = x.shape
  o = kernel.shape[-1]
  zero = jnp.zeros((i, o), kernel.dtype)
  tap = lambda r, c: zero if r is None or c is None else kernel[r, c]
  # [u, v, I, (a, b, O)]: offset (u, v) of phase (a, b).
  k4 = jnp.stack([jnp.stack([jnp.concatenate(
      [tap(_CONVT3_TAPS[a][u], _CONVT3_TAPS[b][v]) for a in range(2) for b in range(2)],
      axis=-1) for v in range(2)]) for u in range(2)])
  xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  z = _correlate_2x2_gemm(xp, k4).reshape(n, h, w, 2, 2, o)
  return z.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)


def convt3_xla_gemmgrad(x, kernel):
  """XLA's forward; gradients of the sub-pixel GEMM form (custom VJP)."""
  return _with_custom_grads(convt3_xla, _vjp_grads(convt3_subpixel))(x, kernel)
