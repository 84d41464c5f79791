"""Same weights, same outputs: p2p_jax against the reference's networks (issue 17's numbers).

  PYTHONPATH=. python benchmarks/pytorch_equivalence.py [--ngf 64] [--size 256] [--batch 2]
  PYTHONPATH=. python benchmarks/pytorch_equivalence.py --trajectory   # + 20 training steps

Builds the reference's unet_256 G and 70x70 D (tests/torch_reference.py: the reference's
module layout and key names) with random weights and running statistics, converts them with
p2p_jax.pytorch.weights, and prints one JSON line of max absolute differences (float32, CPU,
[-1, 1] inputs):
  g_eval        inference.TrainedGenerator mode='eval' vs net.eval()
  g_paper       mode='paper' with dropout off (each image normalised by its own statistics,
                as the reference tests at batch 1) vs net.train() image by image
  g_batch_stats G.apply(train=True) on the batch vs net.train(), and the running
                statistics both update (g_running_stats)
  d_eval, d_batch_stats, d_running_stats   the same for D on concat(x, y)
  round_trip_exact  PyTorch -> p2p_jax -> PyTorch gives the identical tensors
With --trajectory, also the worst relative loss and parameter differences after 20 steps of
tests/test_pytorch_trajectory.py's run (a small U-Net, batch 1 and 2).

  PYTHONPATH=. python benchmarks/pytorch_equivalence.py --cyclegan [--trajectory]

measures CycleGAN's networks instead (issue 25): resnet_9blocks and resnet_6blocks G with
instance norm (g9_eval, g6_eval; g9_offsets with conv biases of N(0, 1), the channel
offsets trained networks have, which instance norm's variance must survive), the 70x70
PatchGAN on one image (d_eval, d_offsets), and the exact round trip; with --trajectory the
20-step CycleGAN run of tests/test_pytorch_cyclegan_trajectory.py. Needs torch.
"""

import argparse
import json
import os
import sys

import jax
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))  # the reference-layout torch modules

# pylint: disable=g-import-not-at-top,wrong-import-position  (after the sys.path entry)
import torch_reference as tr
from p2p_jax import config_schema, inference, networks
from p2p_jax.pytorch import weights as pw


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _run(net, x, train):
  net.train(train)
  with torch.no_grad():
    return net(_nchw(x)).numpy().transpose(0, 2, 3, 1)


def _stats_diff(flax_stats, net, entries):
  sd = {k: v.numpy() for k, v in net.state_dict().items()}
  return max(float(np.abs(np.asarray(flax_stats[e.module][e.name]) - sd[e.key]).max())
             for e in entries if e.collection == 'batch_stats')


def _max(a, b):
  return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def measure(ngf: int, size: int, batch: int) -> dict:
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  y = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  out = {}

  g_net = tr.init_weights(tr.UnetGenerator(3, 3, 8, ngf, 'batch', dropout=None), 0)
  g_sd = {k: v.numpy().copy() for k, v in g_net.state_dict().items()}
  g_vars, arch = pw.generator_from_torch(g_sd)
  config = config_schema.get_config()
  config.model.update(arch, dropout=False)
  eval_g = inference.TrainedGenerator(config, g_vars, 'eval')
  out['g_eval'] = _max(eval_g.apply(x), _run(g_net, x, False))
  paper_g = inference.TrainedGenerator(config, g_vars, 'paper')
  want = np.concatenate([_run(g_net, x[i:i + 1], True) for i in range(batch)])
  g_net.load_state_dict({k: torch.from_numpy(v) for k, v in g_sd.items()})  # undo the updates
  out['g_paper'] = _max(paper_g.apply(x), want)
  g = networks.create_generator(config)
  got, mutated = jax.jit(lambda v, x: g.apply(v, x, train=True, mutable=['batch_stats']))(
      g_vars, x)
  out['g_batch_stats'] = _max(got, _run(g_net, x, True))
  out['g_running_stats'] = _stats_diff(mutated['batch_stats'], g_net,
                                       pw.unet_entries(8, ngf, 3, 3, 'batch'))

  d_net = tr.init_weights(tr.NLayerDiscriminator(6, ngf, 3, 'batch'), 1)
  d_sd = {k: v.numpy().copy() for k, v in d_net.state_dict().items()}
  d_vars, d_arch = pw.discriminator_from_torch(d_sd)
  config.model.update(d_arch)
  d = networks.create_discriminator(config)
  xy = np.concatenate([x, y], -1)
  got = jax.jit(lambda v, x, y: d.apply(v, x, y, train=False))(d_vars, x, y)
  out['d_eval'] = _max(got, _run(d_net, xy, False))
  got, mutated = jax.jit(lambda v, x, y: d.apply(v, x, y, train=True,
                                                 mutable=['batch_stats']))(d_vars, x, y)
  out['d_batch_stats'] = _max(got, _run(d_net, xy, True))
  out['d_running_stats'] = _stats_diff(mutated['batch_stats'], d_net,
                                       pw.patchgan_entries(3, ngf, 6, 'batch'))

  back_g = pw.generator_to_torch(g_vars, config.model, num_batches_tracked=7)
  back_d = pw.discriminator_to_torch(d_vars, config.model, num_batches_tracked=7)
  out['round_trip_exact'] = all(
      list(back) == list(sd) and all(np.array_equal(back[k], v) for k, v in sd.items())
      for back, sd in ((back_g, g_sd), (back_d, d_sd)))
  return out


def _offset_biases(net, scale):
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
        m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * scale)
  return net


def measure_cyclegan(ngf: int, size: int, batch: int) -> dict:
  """CycleGAN's G (9 and 6 blocks) and one-image D, instance norm, eval mode."""
  x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  out, round_trips = {}, []
  for key, n_blocks, scale in (('g9_eval', 9, 0.0), ('g6_eval', 6, 0.0),
                               ('g9_offsets', 9, 1.0)):
    net = tr.init_weights(tr.ResnetGenerator(3, 3, ngf, 'instance', False, n_blocks), 0)
    net = _offset_biases(net, scale) if scale else net
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    variables, arch = pw.generator_from_torch(sd)
    config = config_schema.get_config()
    config.model.update(arch)
    out[key] = _max(inference.TrainedGenerator(config, variables, 'eval').apply(x),
                    _run(net, x, False))
    round_trips.append((pw.generator_to_torch(variables, config.model), sd))
  for key, scale in (('d_eval', 0.0), ('d_offsets', 1.0)):
    net = tr.init_weights(tr.NLayerDiscriminator(3, ngf, 3, 'instance'), 1)
    net = _offset_biases(net, scale) if scale else net
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    variables, arch = pw.discriminator_from_torch(sd)
    config.model.update(arch)
    d = networks.create_discriminator(config, x_channels=0, y_channels=3)
    got = jax.jit(lambda v, y: d.apply(v, None, y, train=False))(variables, x)
    out[key] = _max(got, _run(net, x, False))
    round_trips.append((pw.discriminator_to_torch(variables, config.model), sd))
  out['round_trip_exact'] = all(
      list(back) == list(sd) and all(np.array_equal(back[k], v) for k, v in sd.items())
      for back, sd in round_trips)
  return out


def cyclegan_trajectory() -> dict:
  import test_pytorch_cyclegan_trajectory as tt  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(1)  # tiny convs: one thread is the fast one (see the test)
  out = {}
  for batch in (1, 2):
    jax_losses, torch_losses, state, nets, _ = tt.run_both(batch, tt.LR)
    out[f'traj_b{batch}_loss_rel'] = max(abs(j[k] - t[k]) / abs(t[k])
                                         for j, t in zip(jax_losses, torch_losses) for k in t)
    after, _ = tt.cyclegan_workdir.networks_from_torch(tt.numpy_dicts(nets))
    want = {'g': {n: after[n]['params'] for n in tt.cyclegan.G_NAMES},
            'd': {n: after[n]['params'] for n in tt.cyclegan.D_NAMES}}
    diffs = tt.relative_differences({'g': state.g.params, 'd': state.d.params}, want)
    out[f'traj_b{batch}_param_rel'] = max(v for k, v in diffs.items()
                                          if not tt.before_instance_norm(k))
  return out


def trajectory() -> dict:
  import test_pytorch_trajectory as tt  # pylint: disable=import-outside-toplevel
  out = {}
  for batch in (1, 2):
    jax_losses, torch_losses, got, want = tt.run_both(batch)
    out[f'traj_b{batch}_loss_rel'] = max(abs(j[k] - t[k]) / abs(t[k])
                                         for j, t in zip(jax_losses, torch_losses) for k in t)
    out[f'traj_b{batch}_param_rel'] = max(tt.relative_differences(got, want).values())
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--trajectory', action='store_true')
  parser.add_argument('--cyclegan', action='store_true')
  args = parser.parse_args()
  result = {'ngf': args.ngf, 'size': args.size, 'batch': args.batch,
            'torch': torch.__version__, 'jax': jax.__version__,
            **(measure_cyclegan if args.cyclegan else measure)(args.ngf, args.size, args.batch)}
  if args.trajectory:
    result.update(cyclegan_trajectory() if args.cyclegan else trajectory())
  print(json.dumps(result))


if __name__ == '__main__':
  main()
