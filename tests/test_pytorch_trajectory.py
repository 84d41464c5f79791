"""p2p_jax's training step and the PyTorch reference's follow the same trajectory.

From the same weights (converted from torch), on the same batches, with dropout off (its
masks cannot be shared), p2p_jax's real step (pix2pix.make_train_step, Adam from
state.create_optimizers, run through parallel.DataParallel) and a PyTorch step written with
the reference's conventions (pix2pix_model.optimize_parameters: G forward once; D step on
0.5 * (BCE(D(x, G(x).detach()), 0) + BCE(D(x, y), 1)); G step on BCE(D(x, G(x)), 1) +
100 * L1 against the updated D; torch.optim.Adam(lr 2e-4, betas (0.5, 0.999))) give the
same losses step by step and the same parameters and BatchNorm running statistics after.
"""

import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
import jax
from conftest import tiny_config
from p2p_jax import networks, parallel, state as state_lib
from p2p_jax.methods import pix2pix
from p2p_jax.models import GENERATORS
from p2p_jax.pytorch import weights as pw, workdir as workdir_lib
import torch_reference as tr

STEPS = 20


def _batches(n, size, steps, seed=0):
  rng = np.random.default_rng(seed)
  return [{'input': rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32),
           'target': rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)}
          for _ in range(steps)]


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_step(g, d, opt_g, opt_d, batch, l1_weight=100.0):
  """One iteration as the reference's Pix2PixModel.optimize_parameters (pool_size 0)."""
  bce, l1 = torch.nn.BCEWithLogitsLoss(), torch.nn.L1Loss()
  x, y = _nchw(batch['input']), _nchw(batch['target'])
  fake = g(x)
  opt_d.zero_grad()
  pred_fake = d(torch.cat([x, fake.detach()], 1))
  d_fake = bce(pred_fake, torch.zeros_like(pred_fake))
  pred_real = d(torch.cat([x, y], 1))
  d_real = bce(pred_real, torch.ones_like(pred_real))
  ((d_fake + d_real) * 0.5).backward()
  opt_d.step()
  d.requires_grad_(False)
  opt_g.zero_grad()
  pred = d(torch.cat([x, fake], 1))
  g_gan = bce(pred, torch.ones_like(pred))
  g_l1 = l1(fake, y)
  (g_gan + l1_weight * g_l1).backward()
  opt_g.step()
  d.requires_grad_(True)
  return {'D_real': d_real.item(), 'D_fake': d_fake.item(), 'G_GAN': g_gan.item(),
          'G_L1': g_l1.item()}


def run_both(batch_size, size=32, generator='unet_32', steps=STEPS, seed=0):
  """Trains both from the same weights; returns (jax losses, torch losses, variables after
  as p2p_jax's {'g': ..., 'd': ...}, torch state_dicts after converted likewise)."""
  config = tiny_config(generator, width=8)
  config.model.dropout = False
  depth = GENERATORS[generator][0]
  g_t = tr.init_weights(tr.UnetGenerator(3, 3, depth, 8, 'batch', dropout=None), seed)
  d_t = tr.init_weights(tr.NLayerDiscriminator(6, 8, config.model.d_layers, 'batch'), seed + 1)
  g_vars, d_vars, arch = pw.from_torch(g_t.state_dict(), d_t.state_dict())
  assert arch['generator'] == generator and arch['d_layers'] == config.model.d_layers

  g = networks.create_generator(config, parallel.AXIS)
  d = networks.create_discriminator(config, parallel.AXIS)
  tx_g, tx_d, schedule = state_lib.create_optimizers(config, steps_per_epoch=1000)
  # The state `python -m p2p_jax.convert` writes: converted G and D, fresh Adam.
  state = workdir_lib.build_state(config, g_vars, d_vars)
  step = pix2pix.make_train_step(g, d, tx_g, tx_d, config.loss, schedule, parallel.AXIS)
  runner = parallel.DataParallel(step, 'pmap', jax.devices()[:1])
  state = runner.put_state(state)

  opt = lambda net: torch.optim.Adam(net.parameters(), lr=config.optim.lr,
                                     betas=(config.optim.b1, config.optim.b2))
  opt_g, opt_d = opt(g_t), opt(d_t)
  g_t.train()
  d_t.train()
  jax_losses, torch_losses = [], []
  for batch in _batches(batch_size, size, steps, seed):
    state, metrics = runner(state, batch)
    jax_losses.append({k: float(v) for k, v in parallel.fetch(metrics).items()})
    torch_losses.append(torch_step(g_t, d_t, opt_g, opt_d, batch))
  state = parallel.fetch(state)
  got = {'g': {'params': state.g.params, 'batch_stats': state.g.batch_stats},
         'd': {'params': state.d.params, 'batch_stats': state.d.batch_stats}}
  g_after, d_after, _ = pw.from_torch(g_t.state_dict(), d_t.state_dict())
  return jax_losses, torch_losses, got, {'g': g_after, 'd': d_after}


def relative_differences(got, want):
  """{path: |got - want| / |want|} (Frobenius norms) for every tensor."""
  out = {}
  for path, w in jax.tree_util.tree_leaves_with_path(want):
    g = got
    for key in path:
      g = g[key.key]
    w = np.asarray(w, np.float64)
    out[jax.tree_util.keystr(path)] = np.linalg.norm(np.asarray(g, np.float64) - w) / max(
        np.linalg.norm(w), 1e-12)
  return out


@pytest.mark.parametrize('batch_size', [1, 2])
def test_same_losses_and_parameters_as_the_reference_step(batch_size):
  jax_losses, torch_losses, got, want = run_both(batch_size)
  for step, (j, t) in enumerate(zip(jax_losses, torch_losses)):
    for name, value in t.items():
      assert abs(j[name] - value) <= 1e-3 * abs(value), (step, name, j[name], value)
  diffs = relative_differences(got, want)
  worst = max(diffs, key=diffs.get)
  assert diffs[worst] < 1e-3, (worst, diffs[worst])
  # The steps really moved the weights (20 Adam steps of 2e-4 on N(0, 0.02) kernels): a
  # typical tensor by ~5%, 50 times the tolerance above.
  initial = pw.from_torch(
      tr.init_weights(tr.UnetGenerator(3, 3, 5, 8, 'batch', dropout=None), 0).state_dict(),
      tr.init_weights(tr.NLayerDiscriminator(6, 8, 2, 'batch'), 1).state_dict())
  moved = relative_differences(dict(g=initial[0], d=initial[1]), want)
  assert np.median(list(moved.values())) > 0.02
