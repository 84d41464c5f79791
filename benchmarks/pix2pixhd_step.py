"""pix2pixHD's training step: p2p_jax against the official step, on the same CPU, alternated.

  PYTHONPATH=. python benchmarks/pix2pixhd_step.py                     # the demo at 128 px
  PYTHONPATH=. python benchmarks/pix2pixhd_step.py --size 256 --rounds 4 --steps 5
  PYTHONPATH=. python benchmarks/pix2pixhd_step.py --batch 4        # the demo's own batch
  # The official code's own networks and inputs (Cityscapes' 36 channels, VGG19 loss on):
  PYTHONPATH=. python benchmarks/pix2pixhd_step.py --networks 512p --in-channels 36 --vgg

The networks of configs/pix2pixhd_demo.py (global generator ngf 16, 3 downsamplings, 3
residual blocks; 2-scale D of 3 layers, ndf 16; LSGAN + feature matching; VGG off;
label_nc 0 with the demo's one grey channel in), batch 1 (pix2pixHD's; --batch for
others), float32. The official step is PyTorch's, with the networks of
tests/torch_reference_hd.py (written from NVIDIA/pix2pixHD's models/networks.py) and the
computation of its models/pix2pixHD_model.py and train.py:
fake = G(x); D on (x, fake.detach()), (x, real) and (x, fake); G's loss backward and
Adam step, then D's. p2p_jax's is the trainer's (methods/pix2pixhd.py through
parallel.DataParallel, the state donated, conv_impl 'auto' unless --conv-impl says).

Each round times --steps steps of one, then of the other (which goes first alternates),
after --warmup untimed steps of each (compilation, memory first touched). One JSON line
per round: images per second of each and their ratio; then a summary line. On a shared
machine the absolute numbers drift: compare the ratios of one run.

--threads 1 runs both on one core: the process is pinned to its first allowed CPU
(sched_setaffinity, before either framework starts a thread) and torch.set_num_threads(1).
XLA's flags alone do not do it: with --xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1 (what this script set before 2026-12-06, later) jax 0.10.2
still ran a 2048x2048 matmul, a conv and this step on both cores of a 2-core machine (as
fast as with its defaults, 2x faster than pinned), so the "one thread" ratios measured
then were p2p_jax on two cores against PyTorch on one. On a loaded machine one core each
is the fair setting: measured here under load, PyTorch's step with its 2 default OpenMP
threads was 64x slower than with one (threads spinning for cores the other processes held).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))


def _vgg_state_dict():
  """VGG19 weights in torchvision's layout, generated (a step's time does not depend on the
  values; the real file cannot be downloaded here, and nothing but this timing uses these)."""
  import torch_reference_hd as tr  # pylint: disable=import-outside-toplevel
  return tr.vgg19_state_dict(seed=2)


def make_jax(config, height: int, width: int, batch: int = 1):
  """() -> one timed step of p2p_jax (blocking), for `batch` random images of height x width
  px, on JAX's default backend."""
  # pylint: disable=import-outside-toplevel
  import jax
  from p2p_jax import parallel
  from p2p_jax.methods import pix2pixhd
  from p2p_jax.models import vgg19
  from p2p_jax.pytorch import vgg19_weights
  setup = pix2pixhd.METHOD.setup(config, 1, parallel.AXIS)
  kernels = (vgg19.to_kernels(vgg19_weights.check(
      {k: v.numpy() for k, v in _vgg_state_dict().items()})) if config.pix2pixhd.vgg_loss
             else None)
  runner = parallel.DataParallel(setup.step, 'pmap', jax.devices()[:1], donate=True,
                                 constants=kernels)
  state = [runner.put_state(jax.jit(setup.init)())]
  rng = np.random.default_rng(0)
  data = {'input': rng.uniform(-1, 1, (batch, height, width, config.model.in_channels)
                             ).astype(np.float32),
          'target': rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)}

  def step():
    state[0], metrics = runner(state[0], data)
    jax.block_until_ready(metrics)
  return step


def make_torch(config, height: int, width: int, device: str = 'cpu',
               dtype: str = 'float32', batch: int = 1):
  """() -> one step of the official computation in PyTorch, same networks and data, on
  `device`; dtype bfloat16: the forward passes under torch.autocast (mixed precision)."""
  # pylint: disable=import-outside-toplevel
  import contextlib
  import torch
  import torch_reference_hd as tr
  hd, model = config.pix2pixhd, config.model
  c = model.in_channels
  g = tr.init_weights(tr.GlobalGenerator(c, 3, model.ngf, hd.n_downsample_global,
                                         hd.n_blocks_global), 0).to(device)
  d = tr.init_weights(tr.MultiscaleDiscriminator(c + 3, model.ndf, model.d_layers, hd.num_D),
                      1).to(device)
  opt_g = torch.optim.Adam(g.parameters(), lr=config.optim.lr,
                           betas=(config.optim.b1, config.optim.b2))
  opt_d = torch.optim.Adam(d.parameters(), lr=config.optim.lr,
                           betas=(config.optim.b1, config.optim.b2))
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.uniform(-1, 1, (batch, c, height, width)).astype(np.float32)).to(device)
  real = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, height, width)).astype(np.float32)
                          ).to(device)
  mixed = (lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)) if (
      dtype == 'bfloat16') else contextlib.nullcontext
  vgg_loss = None
  if hd.vgg_loss:
    features = tr.vgg19_features()
    features.load_state_dict({k[len('features.'):]: v for k, v in _vgg_state_dict().items()})
    vgg_loss = tr.VGGLoss(tr.Vgg19(features)).to(device)

  def step():
    with mixed():
      _, loss_g, loss_d = tr.official_losses(g, d, x, real, n_layers=model.d_layers,
                                             lambda_feat=hd.lambda_feat, vgg_loss=vgg_loss)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    return loss_g.item()
  return step


def timed(step, n: int, batch: int = 1) -> float:
  """Images per second over n steps of `batch` images."""
  start = time.perf_counter()
  for _ in range(n):
    step()
  return n * batch / (time.perf_counter() - start)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--size', type=int, default=128, help='image side (a multiple of 16)')
  p.add_argument('--height', type=int, default=0, help='instead of --size: H (and --width)')
  p.add_argument('--width', type=int, default=0)
  p.add_argument('--batch', type=int, default=1,
                 help='images per step (pix2pixHD trains with 1; the demo config with 4)')
  p.add_argument('--networks', default='demo', choices=('demo', '512p'),
                 help="demo: configs/pix2pixhd_demo.py's; 512p: the 512p recipe's global G "
                 '(ngf 64, 4 downsamplings, 9 blocks) and 2-scale D (ndf 64) on an RGB input')
  p.add_argument('--in-channels', type=int, default=0,
                 help="G's input channels (0: the networks' own, 1 for demo, 3 for 512p); 36 "
                 "is the Cityscapes recipes' (35 one-hot labels + the instance edges), the "
                 'official default; D sees them + 3. Random values: a conv costs the same')
  p.add_argument('--vgg', action='store_true',
                 help="the VGG19 perceptual loss on (the official default; off in the demo "
                 'config), with generated weights in torchvision\'s layout on both sides')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                 help="p2p_jax's config.compute.dtype; PyTorch's forward under autocast")
  p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'),
                 help="PyTorch's device (p2p_jax runs on JAX's default backend)")
  p.add_argument('--jax-only', action='store_true', help='time p2p_jax alone (no PyTorch)')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=5, help='timed steps per round and side')
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--conv-impl', default='auto', help="p2p_jax's config.compute.conv_impl")
  p.add_argument('--threads', type=int, default=0,
                 help='1: both frameworks on one core (the process pinned to it); 0: their '
                 'defaults (all cores)')
  args = p.parse_args(argv)
  if args.threads == 1:  # before jax or torch starts a thread: they all inherit it
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(1)
  elif args.threads:
    raise SystemExit('--threads must be 0 or 1')
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
  config = config_schema.load_file(os.path.join(ROOT, 'configs', 'pix2pixhd_demo.py'))
  height, width = (args.height, args.width) if args.height else (args.size, args.size)
  config.data.update(load_size=width, crop_size=height)
  config.compute.update(conv_impl=args.conv_impl, dtype=args.dtype)
  if args.networks == '512p':
    config.model.update(ngf=64, ndf=64, in_channels=3)
    config.pix2pixhd.update(n_downsample_global=4, n_blocks_global=9)
  if args.in_channels:
    config.model.in_channels = args.in_channels
  config.pix2pixhd.vgg_loss = args.vgg
  sides = {'p2p_jax': make_jax(config, height, width, args.batch)}
  if not args.jax_only:
    sides['pytorch'] = make_torch(config, height, width, args.device, args.dtype,
                                  args.batch)
  for step in sides.values():
    for _ in range(args.warmup):
      step()
  ratios = []
  for r in range(args.rounds):
    order = list(sides) if r % 2 == 0 else list(sides)[::-1]
    rates = {name: timed(sides[name], args.steps, args.batch) for name in order}
    ratio = rates['p2p_jax'] / rates['pytorch'] if 'pytorch' in rates else None
    ratios += [ratio] if ratio else []
    print(json.dumps({'round': r, 'first': order[0], 'size': f'{width}x{height}',
                      'batch': args.batch,
                      **{f'{k}_img_per_s': round(v, 3) for k, v in rates.items()},
                      'ratio': ratio and round(ratio, 3)}), flush=True)
  import jax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  print(json.dumps({'summary': True, 'networks': args.networks,
                    'in_channels': config.model.in_channels, 'vgg': args.vgg,
                    'size': f'{width}x{height}',
                    'batch': args.batch, 'dtype': args.dtype,
                    'jax_device': str(jax.devices()[0].device_kind),
                    'torch_device': args.device,
                    'rounds': args.rounds, 'steps': args.steps,
                    **({'ratio_median': round(statistics.median(ratios), 3),
                        'ratio_min': round(min(ratios), 3), 'ratio_max': round(max(ratios), 3)}
                       if ratios else {'pytorch': 'not run'}),
                    'threads': args.threads or 'default', 'conv_impl': args.conv_impl,
                    'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
                    'cpus': os.cpu_count(), 'cpus_used': len(os.sched_getaffinity(0))}),
        flush=True)


if __name__ == '__main__':
  main()
