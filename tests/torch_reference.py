"""Small PyTorch networks laid out as junyanz/pytorch-CycleGAN-and-pix2pix lays out its own.

Written for the tests from a reading of the reference's models/networks.py (commit 032e884):
same modules, same order inside each nn.Sequential, so the same state_dict key names
(`model.model.1.model.3.model.1.weight`, ...) and shapes, and the same computation. Only the
structure is reproduced; the reference's option parsing, init and training loop are not.

  U-Net: nested blocks, outermost first. Inside a block's Sequential, index 1 (outermost) or
  3 (the others) holds the next block; innermost: LeakyReLU, Conv, ReLU, ConvT, Norm;
  intermediate: LeakyReLU, Conv, Norm, [block], ReLU, ConvT, Norm, [Dropout];
  outermost: Conv, [block], ReLU, ConvT (with bias), Tanh. Every block but the outermost
  returns cat([its input, its output]) on channels.
  PatchGAN (`NLayerDiscriminator`): `model.<i>`; PixelGAN (`PixelDiscriminator`): `net.<i>`.
  norm: 'batch' (BatchNorm2d, convs before it without bias), 'instance'
  (InstanceNorm2d without affine or running stats; every conv with a bias), 'none' (as the
  reference's later versions: an identity in the norm's place, convs without bias).
"""

import torch
from torch import nn


def _norm(norm: str, channels: int) -> nn.Module:
  if norm == 'batch':
    return nn.BatchNorm2d(channels)
  if norm == 'instance':
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
  return nn.Identity()


class UnetBlock(nn.Module):
  """One level of the U-Net: down, the inner levels, up (and the skip concatenation)."""

  def __init__(self, outer: int, inner: int, norm: str, sub: nn.Module | None = None,
               in_channels: int | None = None, outermost: bool = False,
               dropout: float | None = None):
    super().__init__()
    bias = norm == 'instance'
    cin = outer if in_channels is None else in_channels
    self.outermost = outermost
    down = nn.Conv2d(cin, inner, 4, 2, 1, bias=bias)
    if outermost:
      layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1),
                nn.Tanh()]
    elif sub is None:  # innermost
      layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
    else:
      layers = [nn.LeakyReLU(0.2, True), down, _norm(norm, inner), sub, nn.ReLU(True),
                nn.ConvTranspose2d(2 * inner, outer, 4, 2, 1, bias=bias), _norm(norm, outer)]
      if dropout is not None:
        layers.append(nn.Dropout(dropout))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    y = self.model(x)
    return y if self.outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
  """The reference's U-Net with `depth` downsamplings (8: unet_256, 7: unet_128).

  dropout: None builds no Dropout modules (the reference's --no_dropout); a rate builds
  them in the depth - 5 blocks just outside the innermost, as the reference.
  """

  def __init__(self, in_channels=3, out_channels=3, depth=8, ngf=64, norm='batch',
               dropout: float | None = 0.5):
    super().__init__()
    block = UnetBlock(ngf * 8, ngf * 8, norm)
    for _ in range(depth - 5):
      block = UnetBlock(ngf * 8, ngf * 8, norm, block, dropout=dropout)
    for mult in (4, 2, 1):
      block = UnetBlock(ngf * mult, ngf * mult * 2, norm, block)
    self.model = UnetBlock(out_channels, ngf, norm, block, in_channels, outermost=True)

  def forward(self, x):
    return self.model(x)


class NLayerDiscriminator(nn.Module):
  """The reference's PatchGAN: n_layers stride-2 convs, one stride-1 conv, a 1-channel conv."""

  def __init__(self, in_channels=6, ndf=64, n_layers=3, norm='batch'):
    super().__init__()
    bias = norm == 'instance'
    layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    width = ndf
    for n in range(1, n_layers + 1):
      out = ndf * min(2 ** n, 8)
      stride = 2 if n < n_layers else 1
      layers += [nn.Conv2d(width, out, 4, stride, 1, bias=bias), _norm(norm, out),
                 nn.LeakyReLU(0.2, True)]
      width = out
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


class PixelDiscriminator(nn.Module):
  """The reference's 1x1 PixelGAN (its last conv has a bias only with instance norm)."""

  def __init__(self, in_channels=6, ndf=64, norm='batch'):
    super().__init__()
    bias = norm == 'instance'
    self.net = nn.Sequential(
        nn.Conv2d(in_channels, ndf, 1, 1, 0), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, 2 * ndf, 1, 1, 0, bias=bias), _norm(norm, 2 * ndf),
        nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, 1, 0, bias=bias))

  def forward(self, x):
    return self.net(x)


def init_weights(net: nn.Module, seed: int = 0) -> nn.Module:
  """pix2pix's init (conv N(0, 0.02), BN scale N(1, 0.02)), plus random biases and running
  statistics so that every tensor is exercised by a conversion test."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.02)
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(1 + 0.02 * torch.randn(m.weight.shape, generator=gen))
        m.bias.copy_(0.02 * torch.randn(m.bias.shape, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
        m.num_batches_tracked.fill_(7)
  return net
