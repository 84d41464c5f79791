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
  ResNet (`ResnetGenerator`, CycleGAN's G): one Sequential `model`: ReflectionPad(3),
  Conv 7x7, Norm, ReLU; 2 x (Conv 3x3 s2 p1, Norm, ReLU); n `ResnetBlock`s (`conv_block`:
  ReflectionPad(1), Conv 3x3, Norm, ReLU, [Dropout(0.5)], ReflectionPad(1), Conv 3x3, Norm;
  out = x + conv_block(x)); 2 x (ConvTranspose 3x3 s2 p1 output_padding 1, Norm, ReLU);
  ReflectionPad(3), Conv 7x7 (with bias), Tanh.
  PatchGAN (`NLayerDiscriminator`): `model.<i>`; PixelGAN (`PixelDiscriminator`): `net.<i>`.
  norm: 'batch' (BatchNorm2d, convs before it without bias), 'instance'
  (InstanceNorm2d without affine or running stats; every conv with a bias), 'none' (as the
  reference's later versions: an identity in the norm's place, convs without bias).
  'instance_tracked': instance norm as PyTorch 0.3 saved it, with running statistics
  (`running_mean`, `running_var`, `num_batches_tracked`) that the networks never use: the
  keys old published files carry.
"""

import torch
from torch import nn


def _norm(norm: str, channels: int) -> nn.Module:
  if norm == 'batch':
    return nn.BatchNorm2d(channels)
  if norm == 'instance':
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
  if norm == 'instance_tracked':
    return _TrackedInstanceNorm(channels)
  return nn.Identity()


class _TrackedInstanceNorm(nn.InstanceNorm2d):
  """InstanceNorm2d with buffers as old files have them, always normalising by the
  image's own statistics (as the reference runs it, whatever the buffers hold)."""

  def __init__(self, channels):
    super().__init__(channels, affine=False, track_running_stats=True)

  def forward(self, x):
    return nn.functional.instance_norm(x, eps=self.eps)


def _biased(norm: str) -> bool:
  return norm.startswith('instance')  # the reference's use_bias rule


class UnetBlock(nn.Module):
  """One level of the U-Net: down, the inner levels, up (and the skip concatenation)."""

  def __init__(self, outer: int, inner: int, norm: str, sub: nn.Module | None = None,
               in_channels: int | None = None, outermost: bool = False,
               dropout: float | None = None):
    super().__init__()
    bias = _biased(norm)
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
    bias = _biased(norm)
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
    bias = _biased(norm)
    self.net = nn.Sequential(
        nn.Conv2d(in_channels, ndf, 1, 1, 0), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, 2 * ndf, 1, 1, 0, bias=bias), _norm(norm, 2 * ndf),
        nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, 1, 0, bias=bias))

  def forward(self, x):
    return self.net(x)


class ResnetBlock(nn.Module):
  """x + conv_block(x): pad, conv, norm, ReLU, [dropout], pad, conv, norm."""

  def __init__(self, dim: int, norm: str, dropout: bool):
    super().__init__()
    bias = _biased(norm)
    layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim),
              nn.ReLU(True)]
    if dropout:
      layers.append(nn.Dropout(0.5))
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
    self.conv_block = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """The reference's ResNet G (resnet_9blocks: n_blocks 9; resnet_6blocks: 6)."""

  def __init__(self, in_channels=3, out_channels=3, ngf=64, norm='instance',
               dropout=False, n_blocks=9):
    super().__init__()
    bias = _biased(norm)
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
              _norm(norm, ngf), nn.ReLU(True)]
    width = ngf
    for _ in range(2):
      layers += [nn.Conv2d(width, 2 * width, 3, 2, 1, bias=bias), _norm(norm, 2 * width),
                 nn.ReLU(True)]
      width *= 2
    layers += [ResnetBlock(width, norm, dropout) for _ in range(n_blocks)]
    for _ in range(2):
      layers += [nn.ConvTranspose2d(width, width // 2, 3, 2, 1, output_padding=1, bias=bias),
                 _norm(norm, width // 2), nn.ReLU(True)]
      width //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


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
      elif isinstance(m, _TrackedInstanceNorm):  # unused values, as old files hold
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
        m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=gen))
  return net
