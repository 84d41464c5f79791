"""Faster computations of the networks' convolutions, chosen once per backend.

`p2p_jax.models` defines the networks with the plain convolutions of `models/layers.py`.
This package holds other ways to compute exactly those functions (`forms.py`,
`winograd.py`), and `convolutions(impl, backend)` picks the pair the networks are handed:

  'xla'     the definitions themselves (XLA's convolution ops);
  'auto'    'xla' on GPU and TPU; on CPU, per layer and shape, the form measured fastest
            there (`cpu_conv_form`, `cpu_conv_transpose_form`);
  others    one form for every layer (benchmarks and comparisons).

Every form takes and returns the same arrays from the same HWIO kernels, so parameters,
checkpoints and results (up to float rounding) do not depend on the choice. Why XLA:CPU
needs this, and every number behind the thresholds below: benchmarks/README.md, "How
convolutions are computed".
"""

import functools
from typing import Callable, NamedTuple

import jax
import numpy as np

from p2p_jax.kernels import forms


class Convolutions(NamedTuple):
  """What the networks compute their convolutions with (see models/layers.py)."""
  conv2d: Callable          # (x, kernel, stride, padding) -> y
  conv_transpose: Callable  # (x, kernel) -> y, PyTorch's ConvTranspose2d(4, 2, 1)
  # (x, kernel) -> y, ConvTranspose2d(3, 2, 1, output_padding=1) of the ResNet generators
  conv_transpose_3x3: Callable = forms.convt3_xla


# name -> (conv form, transposed conv form). For plain convs 'xla_convgrad' and
# 'xla_adjoint' are XLA's own op (its gradients already are convs) and 'taps' is 'gemm'.
FORMS = {
    'xla': (forms.conv_xla, forms.convt_xla),
    'gemm': (forms.conv_gemm, forms.convt_subpixel),
    'xla_gemmgrad': (forms.conv_xla_gemmgrad, forms.convt_xla_gemmgrad),
    'xla_convgrad': (forms.conv_xla, forms.convt_xla_convgrad),
    'xla_adjoint': (forms.conv_xla, forms.convt_xla_adjoint),
    'taps': (forms.conv_gemm, forms.convt_taps),
    'winograd': (forms.conv_winograd, forms.convt_winograd),
}
IMPLS = ('auto', *FORMS)
# The 3x3 transposed conv (ResNet generators) has fewer forms: the definition, its
# sub-pixel GEMM form, and the definition with the GEMM form's gradients.
FORMS_3X3 = {'xla': forms.convt3_xla, 'gemm': forms.convt3_subpixel,
             'xla_gemmgrad': forms.convt3_xla_gemmgrad}
_IMPL_3X3 = {impl: ('xla' if impl.startswith('xla') and impl != 'xla_gemmgrad' else
                    impl if impl in FORMS_3X3 else 'gemm') for impl in FORMS}

# The CPU rule's thresholds (benchmarks/README.md has the per-layer timings behind them).
# GEMM forms need enough output columns to amortise their im2col copy.
CPU_GEMM_MIN_FEATURES = 64
# Convs on inputs this large keep XLA's forward (their GEMM patches would be big).
CPU_RECOMPUTE_MIN_SIZE = 128
# Transposed convs with at most this many input rows (batch x height x width) read their
# 16-32 MB kernel as stored ('taps') rather than copying it into the sub-pixel layout.
CPU_TAPS_MAX_ROWS = 64
# Winograd pays for its transforms from this many output pixels x batch (stride-2 convs
# with this many input channels; every stride-1 conv).
CPU_WINOGRAD_MIN_ROWS = 1024
CPU_WINOGRAD_MIN_IN_FEATURES = 64
# Winograd's 5x5 input tiles leave 2x2 output tiles at most for 4x4 kernels; larger ones
# (the ResNet generators' 7x7 convs) would need larger tiles, whose transforms amplify
# rounding (winograd.py).
CPU_WINOGRAD_MAX_KERNEL = 4
# With `narrow_gemm` (pix2pixHD's networks), narrow convs (< CPU_GEMM_MIN_FEATURES outputs)
# with kernels of at most CPU_NARROW_GEMM_MAX_KERNEL on inputs of at most
# CPU_NARROW_GEMM_MAX_IN_FEATURES channels and CPU_WINOGRAD_MIN_ROWS output pixels or more
# take the GEMM forms: its first layers, 3x3 stride-2 16 -> 32 and
# D's 4x4 padding-2 4 -> 16, ran 1.5-1.7x faster so (256 px, one core, forward and backward:
# 6.3 against 10.5 ms, 4.8 against 7.4; benchmarks/README.md).
# Not for pix2pix's narrow layers, whose rule ('xla') was measured on them and whose
# programs stay as they were.
CPU_NARROW_GEMM_MAX_IN_FEATURES = 16
# The 7x7 ones keep XLA's form (256 px, one core, forward and backward: 19 against 21 ms
# for 1 -> 16, 45 against 318 for 16 -> 3).
CPU_NARROW_GEMM_MAX_KERNEL = 4


def _known(dim):
  """An int dimension as it is; None for symbolic (shape-polymorphic export) ones."""
  return dim if isinstance(dim, (int, np.integer)) else None


def cpu_conv_form(x_shape, kernel_shape, stride: int, padding: int,
                  narrow_gemm: bool = False) -> str:
  """The form 'auto' runs on CPU for one conv layer (input NHWC, kernel HWIO).

  Unknown (symbolic) sizes count as large and never choose 'winograd'. narrow_gemm: the
  GEMM forms for narrow layers on narrow inputs too (CPU_NARROW_GEMM_MAX_IN_FEATURES).
  """
  n, h, w, cin = x_shape
  k, cout = kernel_shape[0], kernel_shape[-1]
  rows = _known(n * ((h + 2 * padding - k) // stride + 1) * ((w + 2 * padding - k) // stride + 1))
  size = _known(h)
  if cout < CPU_GEMM_MIN_FEATURES and not (
      narrow_gemm and k <= CPU_NARROW_GEMM_MAX_KERNEL and cin <= CPU_NARROW_GEMM_MAX_IN_FEATURES
      and rows is not None and rows >= CPU_WINOGRAD_MIN_ROWS):
    return 'xla'
  wide = cin >= CPU_WINOGRAD_MIN_IN_FEATURES
  many = rows is not None and rows >= CPU_WINOGRAD_MIN_ROWS
  # 3x3 kernels make 3x3-pixel output blocks from the 5x5 tiles (4x4 kernels 2x2), so
  # the transforms are shared by fewer tiles, and below 1,024 output pixels the GEMM forms
  # win (pix2pixHD's residual blocks at 16x16: 1.4 ms against 2.0).
  if 1 < k <= CPU_WINOGRAD_MAX_KERNEL and rows is not None and (
      (stride == 1 and (k != 3 or many)) or (wide and k % 2 == 0 and many)):
    return 'winograd'
  return 'xla_gemmgrad' if size is None or size >= CPU_RECOMPUTE_MIN_SIZE else 'gemm'


def cpu_conv_transpose_form(x_shape, kernel_shape) -> str:
  """The form 'auto' runs on CPU for one transposed conv layer (never 'winograd': faster
  alone, slower within the training step, with twice the scratch memory)."""
  n, h, w, _ = x_shape
  rows = _known(n * h * w)
  if kernel_shape[-1] < CPU_GEMM_MIN_FEATURES:
    return 'xla_convgrad'
  return 'taps' if rows is not None and rows <= CPU_TAPS_MAX_ROWS else 'gemm'


def cpu_conv_transpose_3x3_form(x_shape, kernel_shape) -> str:
  """The form 'auto' runs on CPU for one 3x3 transposed conv layer: the sub-pixel GEMM
  form at every width (XLA's lhs-dilated conv with its gradients took 16-18 ms for
  pix2pixHD's 128 -> 64, 64 -> 32 and 32 -> 16 layers at 128 px, the GEMM form 1.3-2.1)."""
  del kernel_shape  # every width: unlike 4x4 ones, no narrow 3x3 layer favours XLA's op
  return 'xla_gemmgrad' if _known(x_shape[1]) is None else 'gemm'


def _cpu_conv(x, kernel, stride, padding, narrow_gemm=False):
  form = cpu_conv_form(x.shape, kernel.shape, stride, padding, narrow_gemm)
  return FORMS[form][0](x, kernel, stride, padding)


# One object, so that the networks built with it compare equal from call to call.
_cpu_conv_narrow_gemm = functools.partial(_cpu_conv, narrow_gemm=True)


def _cpu_conv_transpose(x, kernel):
  return FORMS[cpu_conv_transpose_form(x.shape, kernel.shape)][1](x, kernel)


def _cpu_conv_transpose_3x3(x, kernel):
  return FORMS_3X3[cpu_conv_transpose_3x3_form(x.shape, kernel.shape)](x, kernel)


def convolutions(impl: str = 'auto', backend: str | None = None, *,
                 narrow_gemm: bool = False) -> Convolutions:
  """The convolutions to build the networks with: `impl` (one of IMPLS) on `backend`
  (default: JAX's default backend). narrow_gemm: 'auto' on CPU as cpu_conv_form's
  (pix2pixHD's networks)."""
  if impl == 'auto':
    if (backend or jax.default_backend()) == 'cpu':
      conv = _cpu_conv_narrow_gemm if narrow_gemm else _cpu_conv
      return Convolutions(conv, _cpu_conv_transpose, _cpu_conv_transpose_3x3)
    impl = 'xla'
  return Convolutions(*FORMS[impl], FORMS_3X3[_IMPL_3X3[impl]])
