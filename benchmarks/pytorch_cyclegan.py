"""The PyTorch yardstick for CycleGAN: the reference's training iteration, timed here.

  python benchmarks/pytorch_cyclegan.py --batch 1 --image-size 256

The reference's `CycleGANModel.optimize_parameters` (junyanz/pytorch-CycleGAN-and-pix2pix,
models/cycle_gan_model.py) with its default options (resnet_9blocks, 70x70 PatchGANs on one
image, instance norm, no dropout, LSGAN, lambda_A = lambda_B = 10, identity 0.5, pools of
50, one Adam(2e-4, (0.5, 0.999)) over both Gs and one over both Ds), on networks written
in tests/torch_reference.py from the reference's source, random images in [-1, 1]. The
same work as `benchmarks/train_step.py --method cyclegan` on the same machine; prints one
JSON line with the same field names. Needs torch (a test-only dependency of p2p_jax).
"""

import argparse
import itertools
import json
import os
import platform
import random
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import torch_reference as tr  # noqa: E402  (tests/torch_reference.py)

RESNET_9BLOCKS_PARAMS = 11_378_179
PATCHGAN_70_ONE_IMAGE_PARAMS = 2_764_737


class ImagePool:
  """The reference's util/image_pool.py, as it runs: Python's `random` draws."""

  def __init__(self, size: int):
    self.size, self.images = size, []

  def query(self, images):
    if self.size == 0:
      return images
    out = []
    for image in images:
      image = image.unsqueeze(0)
      if len(self.images) < self.size:
        self.images.append(image)
        out.append(image)
      elif random.uniform(0, 1) > 0.5:
        i = random.randint(0, self.size - 1)
        out.append(self.images[i].clone())
        self.images[i] = image
      else:
        out.append(image)
    return torch.cat(out, 0)


def cyclegan_step(nets, opts, pools, real_a, real_b, lambda_a=10.0, lambda_b=10.0,
                  lambda_idt=0.5):
  """One `optimize_parameters`: forward, G step (D frozen), D step on pooled fakes."""
  g_a, g_b, d_a, d_b = nets
  opt_g, opt_d = opts
  mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()
  gan = lambda pred, real: mse(pred, torch.full_like(pred, 1.0 if real else 0.0))
  fake_b = g_a(real_a)
  rec_a = g_b(fake_b)
  fake_a = g_b(real_b)
  rec_b = g_a(fake_a)
  for d in (d_a, d_b):
    d.requires_grad_(False)
  opt_g.zero_grad()
  loss_idt = (l1(g_a(real_b), real_b) * lambda_b * lambda_idt
              + l1(g_b(real_a), real_a) * lambda_a * lambda_idt)
  loss_g = (gan(d_a(fake_b), True) + gan(d_b(fake_a), True)
            + l1(rec_a, real_a) * lambda_a + l1(rec_b, real_b) * lambda_b + loss_idt)
  loss_g.backward()
  opt_g.step()
  for d in (d_a, d_b):
    d.requires_grad_(True)
  opt_d.zero_grad()
  for d, real, fake, pool in ((d_a, real_b, fake_b, pools[1]), (d_b, real_a, fake_a, pools[0])):
    fake = pool.query(fake.detach())
    ((gan(d(real), True) + gan(d(fake.detach()), False)) * 0.5).backward()
  opt_d.step()
  return float(loss_g)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--n-blocks', type=int, default=9)
  parser.add_argument('--steps', type=int, default=5, help='timed iterations')
  parser.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
  args = parser.parse_args(argv)

  torch.manual_seed(0)
  random.seed(0)
  nets = (tr.ResnetGenerator(3, 3, 64, 'instance', False, args.n_blocks),
          tr.ResnetGenerator(3, 3, 64, 'instance', False, args.n_blocks),
          tr.NLayerDiscriminator(3, 64, 3, 'instance'),
          tr.NLayerDiscriminator(3, 64, 3, 'instance'))
  count = lambda net: sum(p.numel() for p in net.parameters())
  if args.n_blocks == 9:
    assert count(nets[0]) == RESNET_9BLOCKS_PARAMS, count(nets[0])
  assert count(nets[2]) == PATCHGAN_70_ONE_IMAGE_PARAMS, count(nets[2])
  adam = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
  opts = (adam(itertools.chain(nets[0].parameters(), nets[1].parameters())),
          adam(itertools.chain(nets[2].parameters(), nets[3].parameters())))
  pools = (ImagePool(50), ImagePool(50))
  shape = (args.batch, 3, args.image_size, args.image_size)
  real_a, real_b = torch.rand(shape) * 2 - 1, torch.rand(shape) * 2 - 1
  times = []
  for i in range(args.warmup + args.steps):
    start = time.perf_counter()
    cyclegan_step(nets, opts, pools, real_a, real_b)
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
  s_per_step = statistics.median(times)
  print(json.dumps({
      'bench': 'pytorch_cyclegan_step', 'batch': args.batch,
      'img_per_s': round(args.batch / s_per_step, 3), 's_per_step': round(s_per_step, 4),
      's_per_step_min': round(min(times), 4), 'image_size': args.image_size,
      'n_blocks': args.n_blocks, 'steps': args.steps,
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'torch': torch.__version__, 'threads': torch.get_num_threads(),
      'cpu_count': os.cpu_count(), 'machine': platform.machine()}), flush=True)


if __name__ == '__main__':
  main()
