"""The PyTorch yardstick of issue 7: the reference pix2pix step, timed on this machine.

  python benchmarks/pytorch_reference.py --batch 1            # train: D step + G step
  python benchmarks/pytorch_reference.py --batch 16 --inference --mode paper
  python benchmarks/pytorch_reference.py --batch 64 --device cuda --dtype bfloat16

Needs only torch (not a dependency of p2p_jax; install it in a separate environment). The
networks are written here from the paper's description with the PyTorch implementation's
conventions (junyanz/pytorch-CycleGAN-and-pix2pix: unet_256 + 70x70 PatchGAN, batch norm,
bias only where no BN follows, dropout 0.5 in three decoder blocks, Adam(2e-4, 0.5),
BCE-with-logits GAN loss + 100 * L1, D's loss halved, G's loss against the updated D),
so that the number compared with benchmarks/train_step.py is the same work on the same
machine. The parameter counts are checked against p2p_jax's (54,413,955 and 2,768,705).
Prints one JSON line with the same field names as benchmarks/train_step.py.
"""

import argparse
import json
import platform
import resource
import statistics
import time

import torch
from torch import nn

UNET_256_PARAMS = 54_413_955
PATCHGAN_70_PARAMS = 2_768_705


class UNet(nn.Module):
  """U-Net with `depth` stride-2 levels: encoder convs, decoder transposed convs, skips."""

  def __init__(self, in_ch=3, out_ch=3, ngf=64, depth=8):
    super().__init__()
    widths = [min(ngf * 2 ** i, ngf * 8) for i in range(depth)]
    self.down = nn.ModuleList()
    for i, w in enumerate(widths):
      cin = in_ch if i == 0 else widths[i - 1]
      layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
      layers.append(nn.Conv2d(cin, w, 4, 2, 1, bias=False))  # BN or no norm: no bias
      if 0 < i < depth - 1:  # no norm on the first layer nor on the bottleneck
        layers.append(nn.BatchNorm2d(w))
      self.down.append(nn.Sequential(*layers))
    self.up = nn.ModuleList()
    for j in range(depth):  # j = 0 is the innermost block
      i = depth - 1 - j  # the encoder level this block mirrors
      cin = widths[i] if j == 0 else 2 * widths[i]
      last = i == 0
      cout = out_ch if last else widths[i - 1]
      layers = [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last)]
      if last:
        layers.append(nn.Tanh())
      else:
        layers.append(nn.BatchNorm2d(cout))
        if 1 <= j <= 3:
          layers.append(nn.Dropout(0.5))
      self.up.append(nn.Sequential(*layers))

  def forward(self, x):
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
    skips.pop()  # the bottleneck feeds the innermost decoder block directly
    for block in self.up:
      x = block(x)
      if skips:
        x = torch.cat([skips.pop(), x], 1)
    return x


def patchgan(in_ch=6, ndf=64, n_layers=3):
  """70x70 PatchGAN for n_layers=3: a 30x30 map of logits at 256x256."""
  layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
  w = ndf
  for n in range(1, n_layers + 1):
    w_next = ndf * min(2 ** n, 8)
    stride = 2 if n < n_layers else 1
    layers += [nn.Conv2d(w, w_next, 4, stride, 1, bias=False), nn.BatchNorm2d(w_next),
               nn.LeakyReLU(0.2)]
    w = w_next
  layers.append(nn.Conv2d(w, 1, 4, 1, 1))
  return nn.Sequential(*layers)


def init_weights(module):
  if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    if module.bias is not None:
      nn.init.zeros_(module.bias)
  elif isinstance(module, nn.BatchNorm2d):
    nn.init.normal_(module.weight, 1.0, 0.02)
    nn.init.zeros_(module.bias)


def count(module):
  return sum(p.numel() for p in module.parameters())


def matmul_gflop_s(n=1024, reps=10, device='cpu'):
  a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for _ in range(3):
    a @ b
  sync()
  t = []
  for _ in range(reps):
    t0 = time.perf_counter()
    a @ b
    sync()
    t.append(time.perf_counter() - t0)
  return 2 * n ** 3 / min(t) / 1e9


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--inference', action='store_true', help='time G alone, no gradients')
  parser.add_argument('--mode', default='paper', choices=['paper', 'eval'])
  parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'],
                      help='bfloat16: autocast mixed precision (float32 weights and losses)')
  args = parser.parse_args(argv)
  dev = torch.device(args.device)
  sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
  autocast = torch.autocast(dev.type, dtype=torch.bfloat16,
                            enabled=args.dtype == 'bfloat16')

  torch.manual_seed(0)
  g, d = UNet(), patchgan()
  g.apply(init_weights)
  d.apply(init_weights)
  if (count(g), count(d)) != (UNET_256_PARAMS, PATCHGAN_70_PARAMS):
    raise SystemExit(f'parameter counts {count(g)}, {count(d)} differ from p2p_jax '
                     f'({UNET_256_PARAMS}, {PATCHGAN_70_PARAMS})')
  g, d = g.to(dev), d.to(dev)
  x = (torch.rand(args.batch, 3, 256, 256) * 2 - 1).to(dev)
  y = (torch.rand(args.batch, 3, 256, 256) * 2 - 1).to(dev)

  if args.inference:
    g.train(args.mode == 'paper')  # paper mode: dropout on, batch statistics

    def step():
      with torch.no_grad(), autocast:
        g(x)
  else:
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()

    def step():
      with autocast:
        fake = g(x)
      d.requires_grad_(True)
      opt_d.zero_grad(set_to_none=True)
      with autocast:  # the losses in float32, as p2p_jax computes them
        pred_fake = d(torch.cat([x, fake.detach()], 1)).float()
        pred_real = d(torch.cat([x, y], 1)).float()
      loss_d = 0.5 * (bce(pred_fake, torch.zeros_like(pred_fake))
                      + bce(pred_real, torch.ones_like(pred_real)))
      loss_d.backward()
      opt_d.step()
      d.requires_grad_(False)
      opt_g.zero_grad(set_to_none=True)
      with autocast:
        pred = d(torch.cat([x, fake], 1)).float()
      loss_g = bce(pred, torch.ones_like(pred)) + 100.0 * l1(fake.float(), y)
      loss_g.backward()
      opt_g.step()

  for _ in range(args.warmup):
    step()
  sync()
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - t0)
  per_step = statistics.median(times)
  print(json.dumps({
      'bench': 'pytorch_inference' if args.inference else 'pytorch_train_step',
      'batch': args.batch,
      'mode': args.mode if args.inference else None,
      'img_per_s': round(args.batch / per_step, 3),
      's_per_step': round(per_step, 4),
      's_per_step_min': round(min(times), 4),
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'matmul_gflop_s': round(matmul_gflop_s(device=dev.type), 1),
      'device': torch.cuda.get_device_name() if dev.type == 'cuda' else platform.processor(),
      'device_peak_mb': (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                         if dev.type == 'cuda' else None),
      'dtype': args.dtype,
      'threads': torch.get_num_threads(),
      'torch': torch.__version__,
      'machine': platform.machine(),
  }))


if __name__ == '__main__':
  main()
