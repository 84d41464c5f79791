"""The networks against the paper and the PyTorch reference: shapes, counts, rules, init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax import config_schema, models, networks
from p2p_jax.models import PatchGAN, UNet


def n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def abstract_init(module, *shapes):
  args = [None if s is None else jnp.zeros(s) for s in shapes]
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, train=False))


def test_unet_256_matches_reference_parameter_count_and_shape():
  variables = abstract_init(UNet(), (1, 256, 256, 3))
  assert n_params(variables['params']) == 54_413_955  # PyTorch unet_256, ngf 64, BN
  out = jax.eval_shape(lambda v: UNet().apply(v, jnp.zeros((2, 256, 256, 3)), train=False),
                       variables)
  assert out.shape == (2, 256, 256, 3)


def test_patchgan_70_matches_reference_parameter_count_and_map_size():
  variables = abstract_init(PatchGAN(), (1, 256, 256, 3), (1, 256, 256, 3))
  assert n_params(variables['params']) == 2_768_705  # PyTorch NLayerDiscriminator(6, 64, 3)
  out = jax.eval_shape(lambda v: PatchGAN().apply(
      v, jnp.zeros((1, 256, 256, 3)), jnp.zeros((1, 256, 256, 3)), train=False), variables)
  assert out.shape == (1, 30, 30, 1)


def test_unet_128_and_channel_options_shapes():
  g = UNet(depth=7, in_channels=1, out_channels=2)
  variables = abstract_init(g, (1, 128, 128, 1))
  out = jax.eval_shape(lambda v: g.apply(v, jnp.zeros((1, 128, 128, 1)), train=False),
                       variables)
  assert out.shape == (1, 128, 128, 2)


@pytest.mark.parametrize('n_layers,expected', [(0, 1), (1, 16), (2, 34), (3, 70), (4, 142),
                                               (5, 286)])
def test_receptive_field_formula(n_layers, expected):
  assert models.receptive_field(models.layer_specs(n_layers)) == expected


@pytest.mark.parametrize('n_layers', [0, 1, 2, 3])
def test_receptive_field_measured_by_gradient(n_layers):
  """The input region that reaches one central logit has the side the formula says."""
  size = 96
  d = PatchGAN(n_layers=n_layers, ndf=2, x_channels=0, y_channels=1, norm='none')
  variables = jax.jit(lambda: d.init(jax.random.PRNGKey(0), None,
                                     jnp.zeros((1, size, size, 1)), train=False))()
  variables = jax.tree.map(jnp.abs, variables)  # positive weights: no accidental zeros

  def center_logit(y):
    logits = d.apply(variables, None, y, train=False)
    c = logits.shape[1] // 2
    return logits[0, c, c, 0]

  grad = jax.jit(jax.grad(center_logit))(jnp.ones((1, size, size, 1)))
  rows = np.nonzero(np.abs(np.asarray(grad[0, :, :, 0])).sum(axis=1))[0]
  cols = np.nonzero(np.abs(np.asarray(grad[0, :, :, 0])).sum(axis=0))[0]
  assert rows.max() - rows.min() + 1 == models.receptive_field(models.layer_specs(n_layers))
  assert cols.max() - cols.min() + 1 == models.receptive_field(models.layer_specs(n_layers))


def _bias_paths(params):
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return sorted('/'.join(str(k.key) for k in path[:-1]) for path, _ in flat
                if path[-1].key == 'bias' and 'norm' not in str(path[-2].key))


def test_biases_follow_the_reference():
  g = abstract_init(UNet(depth=5, ngf=4), (1, 32, 32, 3))['params']
  assert _bias_paths(g) == ['dec5']  # with BN only the output layer has a bias
  d = abstract_init(PatchGAN(ndf=4), (1, 64, 64, 3), (1, 64, 64, 3))['params']
  assert _bias_paths(d) == ['conv1', 'conv5']
  g_in = abstract_init(UNet(depth=5, ngf=4, norm='instance'), (1, 32, 32, 3))['params']
  assert len(_bias_paths(g_in)) == 10  # every conv: 5 down, 5 up


def test_no_norm_on_first_layer_or_bottleneck():
  variables = abstract_init(UNet(), (1, 256, 256, 3))
  norms = {k for k in variables['batch_stats']}
  assert 'enc1_norm' not in norms and 'enc8_norm' not in norms
  assert {f'enc{i}_norm' for i in range(2, 8)} <= norms


def test_bottleneck_carries_information_at_batch_1():
  """BatchNorm on the 1x1 bottleneck would zero it at batch 1 (the paper's errata): an
  encoder-decoder without skips would then give the same output for every input."""
  g = UNet(depth=5, ngf=4, skips=False, dropout=False)
  variables = jax.jit(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)),
                                     train=False))()
  x1 = jax.random.uniform(jax.random.PRNGKey(1), (1, 32, 32, 3), minval=-1, maxval=1)
  x2 = jax.random.uniform(jax.random.PRNGKey(2), (1, 32, 32, 3), minval=-1, maxval=1)
  run = jax.jit(lambda x: g.apply(variables, x, train=True, mutable=['batch_stats'])[0])
  assert float(jnp.max(jnp.abs(run(x1) - run(x2)))) > 1e-4


def test_dropout_is_the_noise_in_train_mode_and_off_in_eval_mode():
  g = UNet(depth=6, ngf=4)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 64, 64, 3), minval=-1, maxval=1)
  variables = jax.jit(lambda: g.init(jax.random.PRNGKey(0), x, train=False))()
  train_fn = jax.jit(lambda k: g.apply(variables, x, train=True, rngs={'dropout': k},
                                       mutable=['batch_stats'])[0])
  train = lambda k: train_fn(jax.random.PRNGKey(k))
  assert float(jnp.max(jnp.abs(train(0) - train(1)))) > 1e-4
  np.testing.assert_array_equal(train(3), train(3))
  eval_fn = jax.jit(lambda: g.apply(variables, x, train=False))
  evals = [eval_fn() for _ in range(2)]
  np.testing.assert_array_equal(evals[0], evals[1])
  no_dropout = UNet(depth=6, ngf=4, dropout=False)
  no_dropout_fn = jax.jit(lambda k: no_dropout.apply(
      variables, x, train=True, mutable=['batch_stats'], rngs={'dropout': k})[0])
  a, b = (no_dropout_fn(jax.random.PRNGKey(k)) for k in (0, 1))
  np.testing.assert_array_equal(a, b)


def test_dropout_placement_paper_and_pytorch():
  assert models.dropout_layers(8, 'paper') == (1, 2, 3)     # CD512-CD1024-CD1024
  assert models.dropout_layers(8, 'pytorch') == (2, 3, 4)   # innermost block has none
  # Same parameters either way, and outputs differ only through where the noise enters.
  x = jnp.zeros((1, 256, 256, 3))
  counts = {p: n_params(abstract_init(UNet(dropout_placement=p), x.shape)['params'])
            for p in ('paper', 'pytorch')}
  assert counts['paper'] == counts['pytorch']


def test_encoder_decoder_has_no_skip_channels():
  ed = abstract_init(UNet(skips=False), (1, 256, 256, 3))['params']
  unet = abstract_init(UNet(), (1, 256, 256, 3))['params']
  assert ed['dec2']['kernel'].shape[2] == 512   # reads only d1 (512 channels)
  assert unet['dec2']['kernel'].shape[2] == 1024  # reads concat(e7, d1)
  assert n_params(ed) < n_params(unet)


def test_initialisation_statistics():
  g = UNet(depth=6, ngf=16)
  params = jax.jit(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)),
                                  train=False))()['params']
  kernels = np.concatenate([np.ravel(v['kernel']) for v in params.values() if 'kernel' in v])
  assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
  scales = np.concatenate([np.ravel(v['scale']) for v in params.values() if 'scale' in v])
  assert abs(scales.mean() - 1.0) < 5e-3 and abs(scales.std() - 0.02) < 5e-3
  biases = [np.ravel(v['bias']) for v in params.values() if 'bias' in v]
  assert all(np.all(b == 0) for b in biases)


def test_bad_inputs_raise_clear_errors_before_compiling():
  g = UNet(depth=5, ngf=4)
  variables = g.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  with pytest.raises(ValueError, match=r'rank 3 shape \(32, 32, 3\)'):
    jax.jit(lambda x: g.apply(variables, x, train=False))(jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match=r'multiples of 2\*\*5 = 32, got 48x40'):
    g.apply(variables, jnp.zeros((1, 48, 40, 3)), train=False)
  with pytest.raises(ValueError, match='expects 3 input channels, got 1'):
    g.apply(variables, jnp.zeros((1, 32, 32, 1)), train=False)
  d = PatchGAN(ndf=4, n_layers=1)
  dv = d.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 3)),
              train=False)
  with pytest.raises(ValueError, match=r'x of shape \(1, 32, 32, 3\) to match y of shape '
                     r'\(1, 32, 32, 3\), got x of shape \(1, 32, 32, 1\)'):
    d.apply(dv, jnp.zeros((1, 32, 32, 1)), jnp.zeros((1, 32, 32, 3)), train=False)
  with pytest.raises(ValueError, match='expects y of shape'):
    d.apply(dv, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 1)), train=False)


def test_networks_builds_named_generators_and_unconditional_d(config):
  g = networks.create_generator(config)
  assert (g.depth, g.skips) == (5, True)
  config.model.generator = 'encoder_decoder_128'
  assert (networks.create_generator(config).depth,
          networks.create_generator(config).skips) == (7, False)
  config.loss.conditional = False
  d = networks.create_discriminator(config)
  assert d.x_channels == 0
  config.model.generator = 'unet_512'
  with pytest.raises(ValueError, match="model.generator must be one of"):
    config_schema.validate(config)


def test_resize_conv_decoder_has_3x3_kernels_and_the_same_shapes(config):
  """model.upsample='resize_conv' swaps the decoder's 4x4 transposed kernels for 3x3 ones;
  everything else (encoder, shapes in and out) stays."""
  config.model.upsample = 'resize_conv'
  g = networks.create_generator(config)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), x, train=False))
  params = variables['params']
  assert params['dec1']['kernel'].shape == (3, 3, 32, 32)
  assert params['dec5']['kernel'].shape == (3, 3, 8, 3)
  assert params['enc1']['kernel'].shape == (4, 4, 3, 4)
  assert jax.eval_shape(lambda v: g.apply(v, x, train=False), variables).shape == x.shape
