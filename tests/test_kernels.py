"""Convolution forms (p2p_jax.kernels): each one against the plain lax op, forward and
gradients; the CPU rule of 'auto'; whole networks with each form.

Tolerance: float32, max |difference| <= 1e-5 * max |reference| (the forms only reorder the
same sums; observed differences are around 3e-7). Winograd computes different sums whose
transforms (entries up to 2.25) amplify rounding: 3e-5, observed 2e-7 to 2e-6 here and
4e-6 to 8e-6 for PatchGAN's conv4 at its full 256 -> 512 channels.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import config_schema, kernels, networks
from p2p_jax.models import layers

RTOL = 1e-5
WINOGRAD_RTOL = 3e-5
# Every form besides 'xla' ('auto' resolves to some of them, see
# test_auto_choice_per_backend_and_shape); for Conv, 'xla_convgrad' and 'xla_adjoint'
# are 'xla' itself and 'taps' is 'gemm'.
CONV_ALTERNATIVES = ['gemm', 'xla_gemmgrad', 'winograd']
CONVT_ALTERNATIVES = ['gemm', 'xla_gemmgrad', 'xla_convgrad', 'xla_adjoint', 'taps',
                      'winograd']


def conv_form(impl, **geometry):
  return functools.partial(kernels.FORMS[impl][0], **geometry)


def convt_form(impl):
  return kernels.FORMS[impl][1]


def rtol_of(impl):
  return WINOGRAD_RTOL if impl == 'winograd' else RTOL


def assert_close(actual, expected, what, rtol=RTOL):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, what
  scale = float(np.max(np.abs(expected)))
  err = float(np.max(np.abs(actual - expected)))
  assert err <= rtol * scale, f'{what}: max |diff| {err:.3g} > {rtol} * {scale:.3g}'


def values_and_grads(fns, x, kernel, seed=3):
  """For each fn: fn(x, kernel) and its gradients w.r.t. x and kernel, for one random
  cotangent. One jitted program for all (compiling is what costs time in these tests)."""
  shape = jax.eval_shape(fns[0], x, kernel).shape
  g = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

  @jax.jit
  def run(x, kernel, g):
    outs = []
    for fn in fns:
      y, vjp = jax.vjp(fn, x, kernel)
      outs.append((y,) + vjp(g))
    return outs
  return run(x, kernel, g)


def random_inputs(n, h, w, cin, k, cout, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((n, h, w, cin)).astype(np.float32),
          rng.standard_normal((k, k, cin, cout)).astype(np.float32))


# (batch, height, width, in, kernel, stride, padding, out): pix2pix's 4x4 s2 p1 and s1 p1
# convs (odd and non-square sizes, one output channel as PatchGAN's last layer), the
# PixelGAN's 1x1, and a 2x2 input as the U-Net's innermost encoder layer; stride-1 convs
# with an output of odd size (Winograd's last tiles overhang), padding 2 and a 3x3 kernel;
# a stride-2 conv on odd sizes (its last row / column is read by no output).
CONV_CASES = [
    (2, 8, 6, 3, 4, 2, 1, 5),
    (2, 7, 7, 16, 4, 1, 1, 1),
    (2, 5, 5, 6, 1, 1, 0, 7),
    (3, 2, 2, 12, 4, 2, 1, 16),
    (1, 8, 5, 32, 4, 1, 1, 64),
    (2, 6, 9, 8, 4, 1, 2, 12),
    (2, 5, 6, 8, 3, 1, 1, 4),
    (2, 7, 9, 8, 4, 2, 1, 6),
]


@pytest.mark.parametrize('impl', CONV_ALTERNATIVES)
@pytest.mark.parametrize('case', CONV_CASES, ids=str)
def test_conv_matches_lax(impl, case):
  n, h, w, cin, k, s, p, cout = case
  x, kernel = random_inputs(n, h, w, cin, k, cout)
  plain = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (s, s), ((p, p), (p, p)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got, ref = values_and_grads(
      [conv_form(impl, stride=s, padding=p), plain], x, kernel)
  for name, a, b in zip(('forward', 'grad x', 'grad kernel'), got, ref):
    assert_close(a, b, f'conv {impl} {case} {name}', rtol_of(impl))


# (batch, height, width, in, out): the U-Net's decoder in miniature: 1x1 inputs (the
# innermost layer), non-square inputs, 3 output channels (the last layer).
CONVT_CASES = [(2, 4, 4, 5, 3), (1, 1, 1, 8, 16), (2, 3, 5, 6, 7), (3, 2, 2, 4, 1)]


@pytest.mark.parametrize('impl', CONVT_ALTERNATIVES)
@pytest.mark.parametrize('case', CONVT_CASES, ids=str)
def test_conv_transpose_matches_lax(impl, case):
  n, h, w, cin, cout = case
  x, kernel = random_inputs(n, h, w, cin, 4, cout)
  plain = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  got, ref = values_and_grads(
      [convt_form(impl), plain], x, kernel)
  assert got[0].shape == (n, 2 * h, 2 * w, cout)
  for name, a, b in zip(('forward', 'grad x', 'grad kernel'), got, ref):
    assert_close(a, b, f'conv_transpose {impl} {case} {name}', rtol_of(impl))


def _batched_gemm_sizes(fn, *args):
  """Batch sizes of the batched matmuls (dot_general with a batch dimension) in fn."""
  return [eqn.invars[0].aval.shape[0] for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns
          if eqn.primitive.name == 'dot_general' and eqn.params['dimension_numbers'][1][0]]


def test_winograd_multiplies_in_the_transformed_domain_and_only_in_float32():
  """Every 4x4 layer runs as 5 x 5 = 25 GEMMs: stride-1 convs as F(2x2, 4x4), stride-2
  convs and the transposed conv as F(4x4, 2x2) (2.56x fewer multiplications than direct);
  bfloat16 and 1x1 convs keep the direct GEMM form."""
  x, kernel = random_inputs(1, 8, 8, 4, 4, 8)
  conv = lambda stride: conv_form('winograd', stride=stride, padding=1)
  convt = convt_form('winograd')
  assert _batched_gemm_sizes(conv(1), x, kernel) == [25]
  assert _batched_gemm_sizes(conv(2), x, kernel) == [25]
  assert _batched_gemm_sizes(convt, x, kernel) == [25]
  bf16 = jnp.asarray(x, jnp.bfloat16), jnp.asarray(kernel, jnp.bfloat16)
  assert _batched_gemm_sizes(conv(1), *bf16) == _batched_gemm_sizes(convt, *bf16) == []
  assert _batched_gemm_sizes(conv(1), x, kernel[:1, :1]) == []


def test_auto_choice_per_backend_and_shape():
  for backend in ('gpu', 'tpu'):
    assert kernels.convolutions('auto', backend) == kernels.convolutions('xla')
  assert kernels.convolutions('xla') == (layers.conv2d, layers.conv_transpose_4x4_s2,
                                         layers.conv_transpose_3x3_s2)

  def conv(inp, out, size, batch=1, stride=2):  # a 4x4 conv, padding 1
    return kernels.cpu_conv_form((batch, size, size, inp), (4, 4, inp, out), stride, 1)

  def convt(inp, out, size, batch=1):  # inp: for reading only, the rule does not use it
    return kernels.cpu_conv_transpose_form((batch, size, size, inp), (4, 4, inp, out))

  # The paper's networks at 256x256 on CPU (in and out channels, input size, batch).
  assert convt(128, 3, 128) == 'xla_convgrad'  # G's output layer
  # The innermost decoder layers (kernels of 16-32 MB for a few pixels): 'taps'; then the
  # sub-pixel GEMM (Winograd is slower within the step for transposed convs).
  assert {convt(1024, 512, s, b) for s, b in [(1, 1), (2, 4), (4, 4), (8, 1)]} == {'taps'}
  assert {convt(1024, 512, 8, 4), convt(1024, 256, 16, 4), convt(512, 128, 32),
          convt(256, 64, 64, 4)} == {'gemm'}
  # Encoder and PatchGAN: XLA's forward for the 3- and 6-channel inputs at 256 px, Winograd
  # from 64 input channels and 1024 output pixels on, the GEMM form below that.
  assert conv(3, 64, 256) == conv(6, 64, 256) == 'xla_gemmgrad'  # enc1, D conv1
  assert {conv(64, 128, 128), conv(128, 256, 64), conv(256, 512, 32, 4)} == {'winograd'}
  assert {conv(256, 512, 32), conv(512, 512, 16, 4), conv(512, 512, 2)} == {'gemm'}
  assert conv(256, 512, 32, stride=1) == 'winograd'  # D's conv4, at any batch
  assert conv(512, 1, 31, stride=1) == 'xla'  # D's output layer
  # 3x3 stride-1 convs (the ResNet generators' blocks, after reflection padding): Winograd
  # from 1,024 output pixels (CycleGAN's at 64x64), the GEMM form below (pix2pixHD's demo
  # at 16x16); 3x3 transposed convs: the sub-pixel GEMM form at every width.
  conv3 = lambda c, out: kernels.cpu_conv_form((1, out + 2, out + 2, c), (3, 3, c, c), 1, 0)
  assert conv3(256, 64) == conv3(128, 32) == 'winograd'
  assert conv3(128, 16) == 'gemm'
  t3 = lambda i, o, size: kernels.cpu_conv_transpose_3x3_form((1, size, size, i),
                                                              (3, 3, i, o))
  assert {t3(256, 128, 64), t3(64, 32, 32), t3(32, 16, 64)} == {'gemm'}
  # pix2pixHD's networks (narrow_gemm): their narrow first layers on narrow inputs take the
  # GEMM forms from 1,024 output pixels on (the demo's G down1 and D layer0 at 128 px);
  # pix2pix's narrow layers, its 7x7 convs and narrow outputs of wide inputs keep XLA's.
  hd = functools.partial(kernels.cpu_conv_form, narrow_gemm=True)
  assert hd((1, 128, 128, 16), (3, 3, 16, 32), 2, 1) == 'xla_gemmgrad'
  assert hd((1, 128, 128, 4), (4, 4, 4, 16), 2, 2) == 'xla_gemmgrad'
  assert hd((1, 64, 64, 4), (4, 4, 4, 16), 2, 2) == 'gemm'
  assert kernels.cpu_conv_form((1, 128, 128, 16), (3, 3, 16, 32), 2, 1) == 'xla'
  assert hd((1, 32, 32, 4), (4, 4, 4, 16), 2, 2) == 'xla'          # 289 output pixels
  assert hd((1, 134, 134, 1), (7, 7, 1, 16), 1, 0) == 'xla'         # G's conv_in
  assert hd((1, 34, 34, 128), (4, 4, 128, 1), 1, 2) == 'xla'        # D's output layer
  assert conv(6, 16, 128) == 'xla'    # pix2pix's narrow D conv1, without narrow_gemm
  # Unknown (symbolic) sizes count as large, and never choose Winograd.
  b, h = jax.export.symbolic_shape('b, h')
  assert kernels.cpu_conv_form((b, h, h, 512), (4, 4, 512, 512), 2, 1) == 'xla_gemmgrad'
  assert kernels.cpu_conv_form((b, h, h, 512), (4, 4, 512, 512), 1, 1) == 'xla_gemmgrad'
  assert kernels.cpu_conv_transpose_form((b, h, h, 512), (4, 4, 512, 512)) == 'gemm'
  # Explicit choices are kept on every backend.
  assert kernels.convolutions('gemm', 'gpu')[:2] == kernels.FORMS['gemm']
  assert kernels.convolutions('gemm', 'gpu')[2] == kernels.FORMS_3X3['gemm']


def test_auto_under_shape_polymorphic_export():
  """`export` traces with symbolic batch and image sizes, which the CPU choice cannot
  compare with its thresholds: they count as unknown (large) instead of raising. Wide
  layers, as in the paper's networks (the tiny test networks never reach the size rules)."""
  b, h = jax.export.symbolic_shape('b, h')
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  auto = kernels.convolutions('auto', 'cpu')
  forms = {
      'conv': (lambda x, k: auto.conv2d(x, k, 2, 1),
               spec(b, 4 * h, 4 * h, 8), spec(4, 4, 8, 64)),
      'conv_transpose': (auto.conv_transpose, spec(b, h, h, 8), spec(4, 4, 8, 64)),
  }
  for name, (fn, x, k) in forms.items():
    exported = jax.export.export(jax.jit(fn), platforms=['cpu'])(x, k)
    assert exported.out_avals[0].shape[0] == b, name
  assert kernels.cpu_conv_transpose_form((b, h, h, 512), (4, 4, 512, 512)) == 'gemm'
  assert kernels.cpu_conv_form((b, 4 * h, 4 * h, 512), (4, 4, 512, 512), 2, 1) == 'xla_gemmgrad'


@pytest.mark.parametrize('make', ['generator', 'discriminator'])
def test_networks_same_parameters_and_outputs_for_every_impl(make):
  """Parameters (names, shapes, initial values) never depend on the implementation; outputs
  and parameter gradients agree with the plain ops."""
  config = tiny_config('unet_32', width=4)
  x, y = np.random.default_rng(1).uniform(-1, 1, (2, 2, 32, 32, 3)).astype(np.float32)
  args = (x,) if make == 'generator' else (x, y)
  # 'xla_gemmgrad' swaps the gradient of every conv and transposed conv, 'winograd' every
  # forward and gradient; the op tests above cover the other forms (each compiles slowly at
  # network size).
  impls = ('xla', 'xla_gemmgrad', 'winograd')
  nets = {}
  for impl in impls:
    config.compute.conv_impl = impl
    nets[impl] = (networks.create_generator(config) if make == 'generator'
                  else networks.create_discriminator(config))
  key = jax.random.PRNGKey(0)
  init = lambda net: jax.jit(functools.partial(net.init, train=False))(key, *args)
  variables = init(nets['xla'])
  for impl in impls[1:]:
    jax.tree.map(np.testing.assert_array_equal, init(nets[impl]), variables)

  @jax.jit
  def outputs_and_grads(params):
    results = {}
    for impl, net in nets.items():
      def loss(params, net=net):
        out, _ = net.apply({**variables, 'params': params}, *args, train=True,
                           mutable=['batch_stats'], rngs={'dropout': jax.random.PRNGKey(4)})
        return jnp.sum(out * jnp.cos(out)), out
      (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
      results[impl] = out, grads
    return results

  results = outputs_and_grads(variables['params'])
  ref_out, ref_grads = results['xla']
  for impl, (out, grads) in results.items():
    assert_close(out, ref_out, f'{make} {impl} output', rtol_of(impl))
    for (path, g), ref in zip(jax.tree_util.tree_leaves_with_path(grads),
                              jax.tree.leaves(ref_grads)):
      # Through BatchNorm and several layers: relative to each leaf's scale, with a little
      # more room than for one op.
      np.testing.assert_allclose(g, ref, rtol=0, atol=1e-4 * float(np.max(np.abs(ref))),
                                 err_msg=f'{make} {impl} grad {jax.tree_util.keystr(path)}')


def test_paper_parameter_counts_do_not_depend_on_impl():
  from p2p_jax.state import param_count
  config = config_schema.get_config()
  for impl in ('xla', 'gemm', 'auto'):
    config.compute.conv_impl = impl
    g = networks.create_generator(config)
    d = networks.create_discriminator(config)
    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    g_vars = jax.eval_shape(lambda x: g.init(jax.random.PRNGKey(0), x, train=False), x)
    d_vars = jax.eval_shape(lambda x: d.init(jax.random.PRNGKey(0), x, x, train=False), x)
    assert param_count(g_vars['params']) == 54_413_955, impl
    assert param_count(d_vars['params']) == 2_768_705, impl


def test_resize_conv_runs_on_every_transposed_form():
  """ResizeConv3x3 hands its expanded kernel to the same transposed-conv forms: forward and
  gradients (through the kernel expansion) agree with the plain op."""
  x, kernel = random_inputs(2, 4, 3, 6, 3, 5)
  expand = layers.resize_conv_kernel
  fns = [lambda x, k, f=kernels.FORMS[impl][1]: f(x, expand(k))
         for impl in ['xla'] + CONVT_ALTERNATIVES]
  results = values_and_grads(fns, x, kernel)
  for impl, got in zip(CONVT_ALTERNATIVES, results[1:]):
    for name, a, b in zip(('forward', 'grad x', 'grad kernel'), got, results[0]):
      assert_close(a, b, f'resize conv {impl} {name}', rtol_of(impl))
