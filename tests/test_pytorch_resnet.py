"""CycleGAN's networks from the reference's weights: the ResNet G and the one-image PatchGAN D
give the reference's outputs, round-trip exactly, load strictly, and misfits get one line."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from p2p_jax import networks
from p2p_jax.pytorch import resnet_weights, state_dicts, weights as pw
import torch_reference as tr
from test_pytorch_weights import (TOL, full_config, images, model_config, nchw, nhwc,
                                  numpy_dict, one_line_error, run_flax)


def offset_biases(net, scale, seed=1):
  """Biases of N(0, scale): channel means far from zero against their spread, as trained
  convs leave them (what instance norm's variance must survive)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
        m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * scale)
  return net


@pytest.mark.parametrize('n_blocks,ngf,size,norm,dropout,bias_scale', [
    (9, 16, 256, 'instance', False, 1.0),   # resnet_9blocks at 256 px, trained-like offsets
    (6, 16, 256, 'instance', False, 0.02),  # resnet_6blocks
    (2, 8, 64, 'batch', True, 0.02),        # BatchNorm: running statistics; dropout's indices
    (2, 4, 32, 'none', False, 0.02),        # the reference's 'none': no norm, no conv biases
    (2, 4, 32, 'instance_tracked', False, 0.02),  # an old file's unused statistics
])
def test_resnet_generator_outputs_match_torch(n_blocks, ngf, size, norm, dropout, bias_scale):
  net = offset_biases(tr.init_weights(tr.ResnetGenerator(3, 3, ngf, norm, dropout, n_blocks),
                                      seed=n_blocks), bias_scale)
  sd = numpy_dict(net)
  variables, arch = pw.generator_from_torch(sd)
  want_norm = {'instance_tracked': 'instance'}.get(norm, norm)
  assert arch == dict(generator=f'resnet_{n_blocks}blocks', ngf=ngf, in_channels=3,
                      out_channels=3, norm=want_norm, dropout=dropout)
  g = networks.create_generator(full_config(arch, dropout=False))  # dropout off to compare
  x = images(2 if norm == 'batch' else 1, size)
  net.eval()
  with torch.no_grad():
    want = nhwc(net(nchw(x)))
  got, _ = run_flax(g, variables, x, train=False)
  assert np.abs(got - want).max() < TOL, np.abs(got - want).max()
  if norm == 'batch':  # batch statistics and the running statistics after them
    net.train()
    for m in net.modules():
      if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
    with torch.no_grad():
      want = nhwc(net(nchw(x)))
    got, stats = run_flax(g, variables, x, train=True)
    assert np.abs(got - want).max() < TOL
    sd_after = numpy_dict(net)
    entries = resnet_weights.resnet_entries(n_blocks, ngf, 3, 3, 'batch', dropout)
    diff = max(float(np.abs(np.asarray(_at(stats, e)) - sd_after[e.key]).max())
               for e in entries if e.collection == 'batch_stats')
    assert diff < 1e-5


def _at(tree, entry):
  for part in entry.module.split('/') + [entry.name]:
    tree = tree[part]
  return tree


@pytest.mark.parametrize('norm', ['instance', 'instance_tracked'])
def test_cyclegan_discriminator_outputs_match_torch(norm):
  """The 70x70 PatchGAN with instance norm on one image (3 channels), as D_A and D_B."""
  net = offset_biases(tr.init_weights(tr.NLayerDiscriminator(3, 8, 3, norm), seed=3), 1.0)
  variables, arch = pw.discriminator_from_torch(numpy_dict(net))
  assert arch == dict(ndf=8, d_layers=3, norm='instance')
  d = networks.create_discriminator(full_config(arch), x_channels=0, y_channels=3)
  y = images(2, 64, seed=1)
  net.eval()
  with torch.no_grad():
    want = nhwc(net(nchw(y)))
  got, _ = run_flax(d, variables, None, y, train=True)
  assert got.shape == want.shape == (2, 6, 6, 1) and np.abs(got - want).max() < TOL


@pytest.mark.parametrize('make', [
    lambda: tr.ResnetGenerator(3, 3, 4, 'instance', False, 9),
    lambda: tr.ResnetGenerator(1, 3, 4, 'batch', True, 6),
    lambda: tr.ResnetGenerator(3, 1, 4, 'none', False, 2),
    lambda: tr.NLayerDiscriminator(3, 4, 3, 'instance')])
def test_round_trip_is_exact_and_loads_strictly(make):
  net = tr.init_weights(make())
  sd = numpy_dict(net)
  is_g = isinstance(net, tr.ResnetGenerator)
  variables, arch = (pw.generator_from_torch if is_g else pw.discriminator_from_torch)(sd)
  export = pw.generator_to_torch if is_g else pw.discriminator_to_torch
  back = export(variables, model_config(arch), num_batches_tracked=7)
  assert list(back) == list(sd)
  for k, v in sd.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
  make().load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_old_files_instance_norm_statistics_are_dropped_and_not_written_back():
  """PyTorch 0.3's files (the published CycleGAN models among them) carry the instance
  norms' running statistics; they import, and export as today's networks hold them."""
  old = tr.init_weights(tr.ResnetGenerator(3, 3, 4, 'instance_tracked', False, 2))
  sd = numpy_dict(old)
  assert 'model.2.running_mean' in sd and 'model.10.conv_block.6.num_batches_tracked' in sd
  wrapped = {'module.' + k: v for k, v in sd.items()}
  variables, arch = pw.generator_from_torch(wrapped)
  back = pw.generator_to_torch(variables, model_config(arch))
  assert not [k for k in back if 'running' in k or 'num_batches' in k]
  tr.ResnetGenerator(3, 3, 4, 'instance', False, 2).load_state_dict(
      {k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
  d = numpy_dict(tr.init_weights(tr.NLayerDiscriminator(3, 4, 3, 'instance_tracked')))
  assert pw.discriminator_from_torch(d)[1]['norm'] == 'instance'


def test_cyclegan_networks_have_the_reference_parameter_counts():
  """resnet_9blocks 11,378,179 and resnet_6blocks 7,837,699 (ngf 64, 3 -> 3, instance
  norm), the one-image 70x70 D 2,764,737: the entry lists, the torch modules and p2p_jax's
  flax modules agree."""
  count = lambda entries: sum(int(np.prod(e.shape)) for e in entries if e.collection == 'params')
  for n, want in ((9, 11_378_179), (6, 7_837_699)):
    net = tr.ResnetGenerator(3, 3, 64, 'instance', False, n)
    entries = resnet_weights.resnet_entries(n, 64, 3, 3, 'biased')
    assert [e.key for e in entries] == list(net.state_dict())
    assert count(entries) == sum(p.numel() for p in net.parameters()) == want
  d = tr.NLayerDiscriminator(3, 64, 3, 'instance')
  assert count(pw.patchgan_entries(3, 64, 3, 'biased')) == sum(
      p.numel() for p in d.parameters()) == 2_764_737


# ---------------------------------------------------------------- bad input


def test_a_discriminator_given_as_generator_and_the_reverse_are_named():
  d = numpy_dict(tr.NLayerDiscriminator(3, 4, 3, 'instance'))
  msg = one_line_error(pw.generator_from_torch, d, source='latest_net_D_A.pth',
                       match='latest_net_D_A.pth: model.0.weight is not a key of a generator')
  assert 'NLayerDiscriminator (the PatchGAN discriminator), not a generator' in msg
  g = numpy_dict(tr.ResnetGenerator(3, 3, 4, 'instance', False, 2))
  one_line_error(pw.discriminator_from_torch, g, source='latest_net_G_A.pth',
                 match="latest_net_G_A.pth: model.1.weight is not a key of the reference's "
                       "NLayerDiscriminator: the file holds the reference's ResnetGenerator")


def test_misfit_resnets_name_the_key_or_the_block_count():
  sd = numpy_dict(tr.ResnetGenerator(3, 3, 4, 'instance', False, 6))
  three = numpy_dict(tr.ResnetGenerator(3, 3, 4, 'instance', False, 3))
  one_line_error(pw.generator_from_torch, three, source='g.pth',
                 match='g.pth: a ResnetGenerator with 3 residual blocks is not one of')
  gap = {k: v for k, v in sd.items() if not k.startswith('model.12.')}
  one_line_error(pw.generator_from_torch, gap, match='residual blocks at model.10, model.11, '
                                                     'model.13')
  bad = {**sd, 'model.13.conv_block.5.weight': np.zeros((16, 16, 1, 1), np.float32)}
  one_line_error(pw.generator_from_torch, bad, match='model.13.conv_block.5.weight has shape '
                                                     '(16, 16, 1, 1), expected (16, 16, 3, 3)')
  one_line_error(pw.generator_from_torch, {k: v for k, v in sd.items() if k != 'model.19.bias'},
                 match='missing key model.19.bias')
  one_line_error(pw.generator_from_torch, sd, norm='batch',
                 match='unexpected key model.1.bias')
  assert state_dicts.identify({'x': np.zeros(3)}) is None
