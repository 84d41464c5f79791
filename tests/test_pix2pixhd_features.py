"""pix2pixHD's instance-wise feature encoder (--instance_feat / --label_feat) against the
official one (tests/torch_reference_hd.py's Encoder, written from NVIDIA/pix2pixHD's
models/networks.py, and its Pix2PixHDModel.forward).

E computes a GlobalGenerator without residual blocks, then replaces each pixel's features
by their mean over the pixels of its image that share its id (the official forward loops
over np.unique(inst), the images, the channels). The same weights give the same features
on Cityscapes-style ids (26001: class 26, instance 1; 7: a class without instances), a
segment's gradient reaches each of its pixels as 1/count of the mean's, the weights go in
and out in the official latest_net_E.pth layout, and a train step with E (G's input =
concat(encoded labels, E(photo, ids)); D sees the encoded labels only; one Adam over G's
and E's parameters) follows the official step's trajectory.
"""

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from p2p_jax import networks, parallel
from p2p_jax.methods import pix2pixhd
from p2p_jax.models.feature_encoder import instance_mean
from p2p_jax.pytorch import pix2pixhd_weights as hw
from test_pix2pixhd_models import TOL, hd_config, max_diff, nchw, nhwc
import test_pix2pixhd_trajectory as hd_trajectory
from test_pix2pixhd_trajectory import is_free_key, torch_step
from test_pytorch_trajectory import relative_differences
import torch_reference_hd as tr

one_torch_thread = hd_trajectory.one_torch_thread   # the fixture, for the step test

LABELS, SIZE = 4, 32


def cityscapes_ids():
  """[2, 32, 32] instance ids as Cityscapes writes them: road (7) and building (11)
  without instance numbers; cars 26000, 26001, 26002 (one pixel); a person 24000 in two
  pieces (one id: one mean, however split); 26001 in both images (a mean per image);
  33000 (one pixel) only in the second image."""
  ids = np.full((2, SIZE, SIZE), 7, np.int64)
  ids[:, :8] = 11
  ids[0, 10:20, 2:12] = 26000
  ids[0, 12:30, 16:28] = 26001
  ids[0, 22:26, 2:6] = 24000
  ids[0, 28:31, 8:14] = 24000
  ids[0, 5, 30] = 26002
  ids[1, 16:32, 0:16] = 26001
  ids[1, 9, 20] = 33000
  return ids


def test_encoder_matches_the_official_one_and_its_weights_round_trip():
  config = hd_config(instance_feat=True, nef=4, n_downsample_E=2)
  net_t = tr.init_weights(tr.Encoder(3, 3, 4, n_down=2), seed=3)
  params, arch = hw.encoder_from_torch(net_t.state_dict(), 'E.pth')
  assert arch == dict(input_nc=3, feat_num=3, nef=4, n_downsample_E=2)
  encoder = networks.create_feature_encoder(config)
  rng = np.random.default_rng(0)
  photo = np.tanh(rng.normal(size=(2, SIZE, SIZE, 3))).astype(np.float32)
  ids = cityscapes_ids()
  # The converted tree is exactly the one FeatureEncoder.init makes.
  init = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), photo, ids)['params']
  assert jax.tree.map(np.shape, init) == jax.tree.map(np.shape, params)

  got = np.asarray(jax.jit(encoder.apply)({'params': params}, photo, ids))
  want = nhwc(net_t(nchw(photo), torch.from_numpy(ids[:, None])))
  assert got.shape == want.shape == (2, SIZE, SIZE, 3)
  assert max_diff(got, want) <= TOL   # measured 1.5e-7
  # Constant on each segment, and the segments differ (not a degenerate output).
  for b in range(2):
    for i in np.unique(ids[b]):
      assert np.ptp(got[b][ids[b] == i], axis=0).max() <= 1e-6, (b, i)
  assert np.ptp(want[0][ids[0] == 26001], axis=0).max() == 0.0
  assert np.abs(want[0, 15, 20] - want[1, 20, 5]).max() > 1e-3   # 26001 in both images
  assert np.abs(want[0, 5, 30] - want[0, 5, 29]).max() > 1e-3    # one pixel: its own value

  # Out in the official layout: strict load, the same tensors, the same features.
  sd = hw.encoder_to_torch(params, arch)
  assert list(sd) == list(net_t.state_dict())
  back = tr.Encoder(3, 3, 4, n_down=2)
  back.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  for key, value in net_t.state_dict().items():
    np.testing.assert_array_equal(sd[key], value.numpy(), err_msg=key)
  assert max_diff(nhwc(back(nchw(photo), torch.from_numpy(ids[:, None]))), want) == 0.0


def test_instance_mean_spreads_each_means_gradient_evenly_over_its_segment():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
  cotangent = rng.normal(size=features.shape).astype(np.float32)
  ids = cityscapes_ids()
  out, grad = jax.jit(lambda f, c: (lambda o, pb: (o, pb(c)[0]))(
      *jax.vjp(lambda g: instance_mean(g, ids), f)))(features, cotangent)
  # torch's autograd through the official loops (the Encoder with its layers removed).
  loops = tr.Encoder(3, 3, 4, n_down=0)
  loops.model = torch.nn.Identity()
  f_t = nchw(features).requires_grad_(True)
  out_t = loops(f_t, torch.from_numpy(ids[:, None]))
  out_t.backward(nchw(cotangent))
  assert max_diff(out, nhwc(out_t)) <= 1e-6        # measured 6.0e-8
  assert max_diff(grad, nhwc(f_t.grad)) <= 1e-6    # measured 3.7e-8
  # Every pixel of a segment: the sum of the segment's cotangents / its pixel count.
  for b in range(2):
    for i in np.unique(ids[b]):
      mask = ids[b] == i
      want = cotangent[b][mask].sum(0) / mask.sum()
      np.testing.assert_allclose(np.asarray(grad)[b][mask], np.broadcast_to(
          want, (mask.sum(), 3)), rtol=1e-5, atol=1e-6, err_msg=f'{b} {i}')


def test_a_state_dict_of_another_network_is_refused_naming_the_file_and_the_key():
  g = tr.GlobalGenerator(5, 3, 4, n_down=2, n_blocks=1).state_dict()
  with pytest.raises(ValueError, match=r'^G.pth: unexpected key model.10.conv_block.1.weight '
                     r".*feature encoder.*latest_net_G"):
    hw.encoder_from_torch(g, 'G.pth')
  e = tr.Encoder(3, 3, 4, n_down=2).state_dict()
  with pytest.raises(ValueError, match=r'^E.pth: missing key model.29.weight .*encoder_from_'):
    hw.generator_from_torch(e, 'E.pth')
  del e['model.17.weight']
  with pytest.raises(ValueError, match=r'^E.pth: missing key model.17.weight \(the last conv'):
    hw.encoder_from_torch(e, 'E.pth')
  e = tr.Encoder(3, 3, 4, n_down=2).state_dict()
  e['model.7.weight'] = e['model.7.weight'][:, :4]
  with pytest.raises(ValueError, match=r'^E.pth: model.7.weight has shape \(16, 4, 3, 3\), '
                     r'expected \(16, 8, 3, 3\)'):
    hw.encoder_from_torch(e, 'E.pth')


# ---------------------------------------------------------------- the train step

def batches(steps, seed=0):
  rng = np.random.default_rng(seed)
  columns = np.arange(SIZE)[None, None, :] * 4 // SIZE   # 4 bands: 4 instances per class
  for _ in range(steps):
    # Labels per pixel (no uniform region: see test_pix2pixhd_trajectory.batches); classes
    # 2 and 3 have instances (class * 1000 + band), 0 and 1 do not (id = class).
    label = rng.integers(0, LABELS, (1, SIZE, SIZE))
    instance = np.where(label >= 2, label * 1000 + columns, label)
    yield {'label': label.astype(np.int32), 'instance': instance.astype(np.int32),
           'target': np.tanh(rng.normal(size=(1, SIZE, SIZE, 3))).astype(np.float32)}


def run_both(steps):
  """p2p_jax's step (METHOD.setup, through DataParallel) and the official one with
  --instance_feat, from the same weights on the same batches: (losses of each, their
  parameters after `steps` steps, the initial parameters), as {'g', 'e', 'd'} trees."""
  config = hd_config('pix2pixhd_global', ngf=4, label_nc=LABELS, n_downsample_global=2,
                     n_blocks_global=1, instance_feat=True, nef=4, n_downsample_E=2)
  config.model.d_layers = 2
  config.data.update(load_size=SIZE, crop_size=SIZE)
  config.optim.schedule = 'constant'
  cin = LABELS + 1
  g_t = tr.init_weights(tr.GlobalGenerator(cin + 3, 3, 4, n_down=2, n_blocks=1), 0)
  e_t = tr.init_weights(tr.Encoder(3, 3, 4, n_down=2), 1)
  d_t = tr.init_weights(tr.MultiscaleDiscriminator(cin + 3, 4, 2, num_D=2), 2)
  initial = {'g': hw.generator_from_torch(g_t.state_dict())[0],
             'e': hw.encoder_from_torch(e_t.state_dict())[0],
             'd': hw.discriminator_from_torch(d_t.state_dict())[0]}

  setup = pix2pixhd.METHOD.setup(config, 100, parallel.AXIS)
  state = jax.eval_shape(setup.init)
  assert jax.tree.map(np.shape, state.g.params) == jax.tree.map(
      np.shape, {'G': initial['g'], 'E': initial['e']})
  tx = pix2pixhd.create_optimizer(config)
  g0, d0 = {'G': initial['g'], 'E': initial['e']}, {'D': initial['d']}
  state = state.replace(step=np.int32(0), rng=np.zeros(2, np.uint32),
                        g=state.g.replace(params=g0, opt_state=tx.init(g0)),
                        d=state.d.replace(params=d0, opt_state=tx.init(d0)))
  runner = parallel.DataParallel(setup.step, 'pmap', jax.devices()[:1])
  state = runner.put_state(state)

  # The official optimizer_G: netG's parameters, then netE's; optimizer_D: netD's.
  adam = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
  opts = {'G': adam(list(g_t.parameters()) + list(e_t.parameters())),
          'D': adam(d_t.parameters())}
  no_vgg = lambda fake, real: torch.zeros(())
  jax_losses, torch_losses = [], []
  for batch in batches(steps):
    state, metrics = runner(state, batch)
    jax_losses.append({k: float(v) for k, v in parallel.fetch(metrics).items()})
    # Pix2PixHDModel.forward: feat_map = netE(real_image, inst_map); G's input
    # cat(input_label, feat_map); D's input_label alone (torch_step's x).
    ids = torch.from_numpy(batch['instance'][:, None])
    real = nchw(batch['target'])
    g_with_e = lambda x, real=real, ids=ids: g_t(torch.cat([x, e_t(real, ids)], 1))
    losses = torch_step(g_with_e, d_t, no_vgg, opts, batch)
    del losses['G_VGG']
    torch_losses.append(losses)
  state = parallel.fetch(state)
  got = {'g': state.g.params['G'], 'e': state.g.params['E'], 'd': state.d.params['D']}
  want = {'g': hw.generator_from_torch(g_t.state_dict())[0],
          'e': hw.encoder_from_torch(e_t.state_dict())[0],
          'd': hw.discriminator_from_torch(d_t.state_dict())[0]}
  return jax_losses, torch_losses, got, want, initial


def test_same_losses_and_parameters_as_the_official_step_with_the_encoder(
    one_torch_thread):  # pylint: disable=redefined-outer-name
  jax_losses, torch_losses, got, want, initial = run_both(6)
  # Measured: losses within 2.5e-6 (relative), parameters 7.9e-7 (E's conv_out bias).
  # Averaging E's features over the label map instead of the instance map misses both by
  # far: losses 1.3e-3 apart at the first step, E's conv_out kernel 2.2e-2 after 3.
  for step, (j, t) in enumerate(zip(jax_losses, torch_losses)):
    assert set(t) | {'G_total', 'D_total', 'lr'} == set(j), (set(t), set(j))
    for name, value in t.items():
      assert abs(j[name] - value) <= 1e-4 * abs(value), (step, name, j[name], value)
  diffs = {k: v for k, v in relative_differences(got, want).items() if not is_free_key(k)}
  worst = max(diffs, key=diffs.get)
  assert diffs[worst] < 1e-3, (worst, diffs[worst])
  # E learned (from G's loss, under G's Adam), as G and D did.
  moved = relative_differences(initial, want)
  for net in ('g', 'e', 'd'):
    assert np.median([moved[k] for k in diffs if k.startswith(f"['{net}']")]) > 1e-3, net


@pytest.mark.parametrize('label_feat', [False, True])
def test_inference_encodes_the_photo_given_beside_the_label_map(label_feat):
  """The official inference with --use_encoded_image: G(cat(input_label, netE(image,
  inst_map))), inst_map the label map with --label_feat. p2p_jax's generator takes the
  photo as channels after the packed label and instance ids (Method.model_input)."""
  config = hd_config('pix2pixhd_global', ngf=4, label_nc=35, n_downsample_global=2,
                     n_blocks_global=1, instance_feat=not label_feat, label_feat=label_feat,
                     nef=4, n_downsample_E=2)
  g_t = tr.init_weights(tr.GlobalGenerator(36 + 3, 3, 4, n_down=2, n_blocks=1), 0)
  e_t = tr.init_weights(tr.Encoder(3, 3, 4, n_down=2), 1)
  ids = cityscapes_ids()
  batch = {'label': np.where(ids >= 1000, ids // 1000, ids), 'instance': ids,
           'target': np.tanh(np.random.default_rng(2).normal(size=(2, SIZE, SIZE, 3)))}
  method = pix2pixhd.METHOD
  variables = method.generator_variables({'params': {
      'G': hw.generator_from_torch(g_t.state_dict())[0],
      'E': hw.encoder_from_torch(e_t.state_dict())[0]}})
  x = method.model_input(config, batch)
  assert x.shape == (2, SIZE, SIZE, 2 + 3)
  got = jax.jit(method.generator(config).apply)(variables, x)
  label, inst = (torch.from_numpy(batch[k][:, None]) for k in ('label', 'instance'))
  features = e_t(nchw(batch['target'].astype(np.float32)), label if label_feat else inst)
  want = nhwc(g_t(torch.cat([tr.encode_input(label, inst, 35), features], 1)))
  # Measured 8.8e-7 (both); the features of the other map would move G's output by 4e-2.
  assert max_diff(got, want) <= TOL
