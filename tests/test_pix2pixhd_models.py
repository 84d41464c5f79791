"""pix2pixHD's networks against the official ones (tests/torch_reference_hd.py, written from
NVIDIA/pix2pixHD's models/networks.py): the same weights give the same outputs, every
intermediate D feature included; weights in and out in the official key layout; the
parameter counts of the published architectures; the input encoding and the VGG19 loss.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from p2p_jax import config_schema, label_maps, networks, state as state_lib
from p2p_jax.models import vgg19
from p2p_jax.models.multiscale_d import output_size, receptive_field
from p2p_jax.models.pix2pixhd import downsample
from p2p_jax.pytorch import pix2pixhd_weights as hw, vgg19_weights
import torch_reference_hd as tr

TOL = 1e-4


def hd_config(generator='pix2pixhd_global', ngf=4, **hd):
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.update(generator=generator, ngf=ngf, ndf=4, norm='instance', d_layers=3)
  config.loss.gan_mode = 'lsgan'
  config.data.update(load_size=64, crop_size=64)
  config.pix2pixhd.update(label_nc=4, n_downsample_global=3, n_blocks_global=2,
                          n_blocks_local=2, vgg_loss=False)
  config.pix2pixhd.update(**hd)
  config_schema.validate(config)
  return config


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize('generator, shape', [('pix2pixhd_global', (2, 32, 48)),
                                              ('pix2pixhd_local', (1, 64, 32))])
def test_generators_match_the_official_ones_and_export_loads_strictly(generator, shape):
  config = hd_config(generator)
  cin = networks.hd_input_channels(config)   # 4 labels + edges
  if generator == 'pix2pixhd_global':
    net_t = tr.GlobalGenerator(cin, 3, 4, n_down=3, n_blocks=2)
  else:
    net_t = tr.LocalEnhancer(cin, 3, 4, n_down=3, n_blocks=2, n_blocks_local=2)
  tr.init_weights(net_t, seed=1)
  params, arch = hw.generator_from_torch(net_t.state_dict(), 'G.pth')
  assert arch == dict(generator=generator, ngf=4, input_nc=cin, output_nc=3,
                      n_downsample_global=3, n_blocks_global=2,
                      n_local_enhancers=int(generator == 'pix2pixhd_local'),
                      n_blocks_local=2 if generator == 'pix2pixhd_local' else 0)
  net = networks.create_generator(config)
  x = np.random.default_rng(0).normal(size=shape + (cin,)).astype(np.float32)
  got = jax.jit(net.apply)({'params': params}, jnp.asarray(x))
  want = nhwc(net_t(nchw(x)))
  assert got.shape == want.shape == shape + (3,)
  assert max_diff(got, want) <= TOL
  assert float(np.std(want)) > 0.05   # not a degenerate output
  # Same parameter count as the official network, and the same init family: weights
  # N(0, 0.02), biases PyTorch's default U(-1/sqrt(fan_in), ...), not zero.
  init = jax.jit(net.init)(jax.random.PRNGKey(0), jnp.asarray(x))['params']
  assert state_lib.param_count(init) == sum(p.numel() for p in net_t.parameters())
  conv_in = init['conv_in'] if 'conv_in' in init else init['model1_1']['conv_in']
  assert abs(float(np.std(conv_in['kernel'])) - 0.02) < 0.004
  bound = 1 / np.sqrt(cin * 49)
  assert 0.3 * bound < float(np.max(np.abs(conv_in['bias']))) <= bound
  # Export: the official network loads it with strict=True and computes the same.
  back = tr.GlobalGenerator(cin, 3, 4, 3, 2) if generator == 'pix2pixhd_global' else (
      tr.LocalEnhancer(cin, 3, 4, 3, 2, 2))
  back.load_state_dict({k: torch.from_numpy(v) for k, v in
                        hw.generator_to_torch(params, arch).items()}, strict=True)
  assert max_diff(nhwc(back(nchw(x))), want) == 0.0


def test_multiscale_discriminator_matches_every_feature_of_the_official_one():
  config = hd_config(num_D=3)
  cin = networks.hd_input_channels(config) + 3
  net_t = tr.init_weights(tr.MultiscaleDiscriminator(cin, 4, 3, num_D=3), seed=2)
  params, arch = hw.discriminator_from_torch(net_t.state_dict())
  assert arch == dict(num_D=3, n_layers_D=3, ndf=4, input_nc=cin, intermediate=True)
  net = networks.create_multiscale_discriminator(config)
  x = np.random.default_rng(1).normal(size=(2, 64, 48, cin)).astype(np.float32)
  got = jax.jit(net.apply)({'params': params}, jnp.asarray(x))
  want = net_t(nchw(x))
  assert len(got) == 3 and all(len(s) == 5 for s in got)
  for scale, (g_scale, w_scale) in enumerate(zip(got, want)):
    for layer, (g, w) in enumerate(zip(g_scale, w_scale)):
      assert g.shape == nhwc(w).shape, (scale, layer)
      assert max_diff(g, nhwc(w)) <= TOL, (scale, layer)
  # The logit maps' sizes (padding 2) and the 70x70-style receptive field of 3 layers.
  assert got[0][-1].shape[1:3] == (output_size(64, 3), output_size(48, 3)) == (11, 9)
  assert receptive_field(3) == 70
  # The reversed naming: the full-resolution scale is scale2.
  assert set(params) == {'scale0', 'scale1', 'scale2'}
  sd = hw.discriminator_to_torch(params, 3, 3)
  back = tr.MultiscaleDiscriminator(cin, 4, 3, num_D=3)
  back.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  # Without feature matching the official D is one Sequential per scale (layer<s>.<i>).
  flat = hw.discriminator_to_torch(params, 3, 3, intermediate=False)
  assert 'layer2.11.weight' in flat and 'scale0_layer0.0.weight' not in flat
  again, arch = hw.discriminator_from_torch(flat)
  assert not arch['intermediate']
  jax.tree.map(np.testing.assert_array_equal, again, params)


def test_the_published_architectures_have_the_official_parameter_counts():
  """label2city_1024p (LocalEnhancer, ngf 32) and the 512p GlobalGenerator (ngf 64), 35
  labels + edges; counts from the official layer list, checked without allocating."""
  for generator, ngf, want in (('pix2pixhd_local', 32, 182_857_059),
                               ('pix2pixhd_global', 64, 182_546_755)):
    config = hd_config(generator, ngf, label_nc=35, n_downsample_global=4, n_blocks_global=9,
                       n_blocks_local=3)
    net = networks.create_generator(config)
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 36)))
    assert state_lib.param_count(shapes['params']) == want, generator


def test_downsample_and_the_input_encoding_are_the_official_ones():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 7, 10, 3)).astype(np.float32)   # odd sizes: ceil(H / 2)
  want = nhwc(tr.avg_pool()(nchw(x)))
  assert max_diff(jax.jit(downsample)(jnp.asarray(x)), want) <= 1e-6
  label = rng.integers(0, 5, (2, 9, 11)).astype(np.int32)
  inst = (label * 1000 + rng.integers(0, 2, (2, 9, 11))).astype(np.int32)
  got = jax.jit(lambda a, b: label_maps.encode(5, label=a, instance=b))(label, inst)
  want = nhwc(tr.encode_input(torch.from_numpy(label[:, None]),
                              torch.from_numpy(inst[:, None]), 5))
  np.testing.assert_array_equal(np.asarray(got), want)
  # Packed for inference (ids as float channels), the same encoding.
  packed = label_maps.pack(5, True, {'label': label, 'instance': inst})
  np.testing.assert_array_equal(
      np.asarray(jax.jit(lambda a: label_maps.encode_packed(5, True, a))(packed)), want)
  # The palette is the official labelcolormap (Cityscapes' for 35; bit-interleaved else).
  assert tuple(label_maps.palette(35)[7]) == (128, 64, 128)
  assert [tuple(c) for c in label_maps.palette(4)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0),
                                                       (128, 128, 0)]


def test_vgg_loss_matches_the_official_one_on_weights_made_here():
  sd = {k: v.numpy() for k, v in tr.vgg19_state_dict(seed=4).items()}
  kernels = vgg19_weights.vgg19.to_kernels(vgg19_weights.check(sd, 'vgg19.pth'))
  rng = np.random.default_rng(5)
  x = np.tanh(rng.normal(size=(2, 32, 32, 3))).astype(np.float32)
  y = np.tanh(rng.normal(size=(2, 32, 32, 3))).astype(np.float32)
  features = tr.vgg19_features()
  features.load_state_dict({k[len('features.'):]: torch.from_numpy(v)
                            for k, v in sd.items()})
  loss_t = tr.VGGLoss(tr.Vgg19(features))
  xt = nchw(x).requires_grad_(True)
  want = loss_t(xt, nchw(y))
  want.backward()
  # The weights as an argument, as the train step gets them (not compiled-in constants).
  got, grad = jax.jit(jax.value_and_grad(
      lambda a, k: vgg19.perceptual_loss(k, a, jnp.asarray(y))))(jnp.asarray(x), kernels)
  assert abs(float(got) - want.item()) <= 1e-5 * abs(want.item())
  assert max_diff(grad, nhwc(xt.grad)) <= 1e-4 * float(np.max(np.abs(nhwc(xt.grad))))
  assert want.item() > 0.01


def test_vgg_weights_are_checked_and_a_missing_file_names_the_path_and_the_url(tmp_path):
  sd = {k: v.numpy() for k, v in tr.vgg19_state_dict(seed=0).items()}
  del sd['features.34.weight']
  with pytest.raises(ValueError, match=r'vgg.pth: has no features.34.weight: not a VGG19'):
    vgg19_weights.check(sd, 'vgg.pth')
  sd = {k: v.numpy() for k, v in tr.vgg19_state_dict(seed=0).items()}
  sd['features.10.weight'] = sd['features.10.weight'][:, :64]
  with pytest.raises(ValueError, match=r'features.10.weight has shape \(256, 64, 3, 3\)'):
    vgg19_weights.check(sd)
  missing = str(tmp_path / 'nowhere.pth')
  with pytest.raises(FileNotFoundError, match=missing + r' .*https://download.pytorch.org/'
                     r'models/vgg19-dcbb9e9d.pth'):
    vgg19_weights.check_exists(missing)
  assert vgg19_weights.resolve('').endswith('hub/checkpoints/vgg19-dcbb9e9d.pth')


def test_a_state_dict_of_another_network_is_refused_by_key():
  net_t = tr.GlobalGenerator(5, 3, 4, 3, 2)
  sd = net_t.state_dict()
  sd['model.99.weight'] = torch.zeros(1)
  with pytest.raises(ValueError, match=r'G.pth: unexpected key model.99.weight'):
    hw.generator_from_torch(sd, 'G.pth')
  with pytest.raises(ValueError, match=r'model.1.weight, is missing'):
    hw.generator_from_torch({'model.model.0.weight': np.zeros((4, 3, 4, 4))})


def test_remat_recomputes_the_residual_blocks_with_the_same_values_and_gradients():
  config = hd_config('pix2pixhd_global', n_downsample_global=2, n_blocks_global=2)
  x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 16, 16, 5)), jnp.float32)
  nets = {}
  for remat in (False, True):
    config.pix2pixhd.remat = remat
    nets[remat] = networks.create_generator(config)
  params = jax.jit(nets[False].init)(jax.random.PRNGKey(0), x)['params']
  loss = lambda net: jax.jit(jax.value_and_grad(
      lambda p: jnp.mean(net.apply({'params': p}, x) ** 2)))(params)
  (v0, g0), (v1, g1) = loss(nets[False]), loss(nets[True])
  assert abs(float(v0) - float(v1)) <= 1e-6 * abs(float(v0))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g0, g1)
  # The blocks are rematerialised: the program holds checkpoint (remat) regions.
  jaxpr = str(jax.make_jaxpr(lambda p: jax.grad(
      lambda q: jnp.mean(nets[True].apply({'params': q}, x)))(p))(params))
  assert 'remat' in jaxpr or 'checkpoint' in jaxpr
