"""Small PyTorch networks laid out as NVIDIA/pix2pixHD lays out its own (for the tests).

Written from a reading of the official models/networks.py and models/pix2pixHD_model.py
(HEAD 14b3b3c): same modules in the same nn.Sequential order, hence the same state_dict keys
(`model.16.conv_block.1.weight`, `model1_2.3.weight`, `scale2_layer0.0.weight`, ...) and
the same computation. Only the structure and the loss conventions are reproduced; option
parsing, data loading and the training script are not.

  GlobalGenerator: model = [ReflectionPad2d(3), Conv 7x7, IN, ReLU,
    n_down x (Conv 3x3 s2 p1, IN, ReLU), n_blocks x ResnetBlock,
    n_down x (ConvTranspose 3x3 s2 p1 op1, IN, ReLU), ReflectionPad2d(3), Conv 7x7, Tanh]
  ResnetBlock: conv_block = [ReflPad(1), Conv 3x3, IN, ReLU, ReflPad(1), Conv 3x3, IN]
  LocalEnhancer: model = the GlobalGenerator's list without its last 3 entries;
    model1_1 = [ReflPad(3), Conv 7x7, IN, ReLU, Conv 3x3 s2 p1, IN, ReLU];
    model1_2 = [ResnetBlock x n_blocks_local, ConvT, IN, ReLU, ReflPad(3), Conv 7x7, Tanh]
  MultiscaleDiscriminator (getIntermFeat): scale{i}_layer{j} = the j-th sub-Sequential of
    an NLayerDiscriminator (padw 2); the forward visits scale{num_D-1-i} at scale i.
  Vgg19: torchvision's vgg19().features layout (features.<i>), sliced at 2, 7, 12, 21, 30.
  Encoder (--instance_feat / --label_feat): GlobalGenerator layers with no ResnetBlock
    (keys model.1, model.4, ...), then the instance-wise average of its forward.
IN = InstanceNorm2d(affine=False).
"""

import numpy as np
import torch
from torch import nn


def _in(c):
  return nn.InstanceNorm2d(c, affine=False)


class ResnetBlock(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.conv_block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _in(dim), nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _in(dim))

  def forward(self, x):
    return x + self.conv_block(x)


def global_layers(input_nc, output_nc, ngf, n_down, n_blocks):
  layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _in(ngf), nn.ReLU(True)]
  for i in range(n_down):
    m = 2 ** i
    layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1), _in(ngf * m * 2), nn.ReLU(True)]
  m = 2 ** n_down
  layers += [ResnetBlock(ngf * m) for _ in range(n_blocks)]
  for i in range(n_down):
    m = 2 ** (n_down - i)
    layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1),
               _in(ngf * m // 2), nn.ReLU(True)]
  return layers + [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]


class GlobalGenerator(nn.Module):

  def __init__(self, input_nc, output_nc, ngf=64, n_down=4, n_blocks=9):
    super().__init__()
    self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf, n_down, n_blocks))

  def forward(self, x):
    return self.model(x)


class Encoder(nn.Module):
  """networks.Encoder: the layers of a GlobalGenerator without residual blocks (hence its
  state_dict keys), then the instance-wise average as the official forward's loops do it:
  for every id of np.unique(inst), every image, every channel, the mean over the pixels of
  that id written back to them."""

  def __init__(self, input_nc, output_nc, ngf=32, n_down=4):
    super().__init__()
    self.output_nc = output_nc
    self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf, n_down, 0))

  def forward(self, x, inst):
    outputs = self.model(x)
    outputs_mean = outputs.clone()
    for i in np.unique(inst.cpu().numpy().astype(int)):
      for b in range(x.size()[0]):
        indices = (inst[b:b + 1] == int(i)).nonzero()
        for j in range(self.output_nc):
          output_ins = outputs[indices[:, 0] + b, indices[:, 1] + j, indices[:, 2],
                               indices[:, 3]]
          mean_feat = torch.mean(output_ins).expand_as(output_ins)
          outputs_mean[indices[:, 0] + b, indices[:, 1] + j, indices[:, 2],
                       indices[:, 3]] = mean_feat
    return outputs_mean


def avg_pool():
  return nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)


class LocalEnhancer(nn.Module):
  """n_local_enhancers = 1, as the published model."""

  def __init__(self, input_nc, output_nc, ngf=32, n_down=4, n_blocks=9, n_blocks_local=3):
    super().__init__()
    self.model = nn.Sequential(*global_layers(input_nc, output_nc, 2 * ngf, n_down,
                                              n_blocks)[:-3])
    self.model1_1 = nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _in(ngf), nn.ReLU(True),
        nn.Conv2d(ngf, 2 * ngf, 3, 2, 1), _in(2 * ngf), nn.ReLU(True))
    self.model1_2 = nn.Sequential(
        *[ResnetBlock(2 * ngf) for _ in range(n_blocks_local)],
        nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1), _in(ngf), nn.ReLU(True),
        nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())
    self.downsample = avg_pool()

  def forward(self, x):
    return self.model1_2(self.model1_1(x) + self.model(self.downsample(x)))


class MultiscaleDiscriminator(nn.Module):
  """getIntermFeat=True: every layer's output, scales full resolution first."""

  def __init__(self, input_nc, ndf=64, n_layers=3, num_D=2):
    super().__init__()
    self.num_D, self.n_layers = num_D, n_layers
    for i in range(num_D):
      for j, seq in enumerate(nlayer_sequences(input_nc, ndf, n_layers)):
        setattr(self, f'scale{i}_layer{j}', nn.Sequential(*seq))
    self.downsample = avg_pool()

  def forward(self, x):
    result = []
    for i in range(self.num_D):
      s = self.num_D - 1 - i
      outs, h = [], x
      for j in range(self.n_layers + 2):
        h = getattr(self, f'scale{s}_layer{j}')(h)
        outs.append(h)
      result.append(outs)
      if i != self.num_D - 1:
        x = self.downsample(x)
    return result


def nlayer_sequences(input_nc, ndf, n_layers):
  kw, padw = 4, 2
  seqs = [[nn.Conv2d(input_nc, ndf, kw, 2, padw), nn.LeakyReLU(0.2, True)]]
  nf = ndf
  for _ in range(1, n_layers):
    prev, nf = nf, min(nf * 2, 512)
    seqs.append([nn.Conv2d(prev, nf, kw, 2, padw), _in(nf), nn.LeakyReLU(0.2, True)])
  prev, nf = nf, min(nf * 2, 512)
  seqs.append([nn.Conv2d(prev, nf, kw, 1, padw), _in(nf), nn.LeakyReLU(0.2, True)])
  seqs.append([nn.Conv2d(nf, 1, kw, 1, padw)])
  return seqs


def vgg19_features():
  """torchvision's vgg19().features (cfg 'E'), indices as in its state_dict."""
  layers, c = [], 3
  for v in (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
            512, 512, 512, 512, 'M'):
    if v == 'M':
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(True)]
      c = v
  return nn.Sequential(*layers)


class Vgg19(nn.Module):
  """The official Vgg19: torchvision's features in five slices, frozen."""

  def __init__(self, features: nn.Sequential):
    super().__init__()
    cuts = (0, 2, 7, 12, 21, 30)
    self.slices = nn.ModuleList(nn.Sequential(*[features[k] for k in range(a, b)])
                                for a, b in zip(cuts, cuts[1:]))
    for p in self.parameters():
      p.requires_grad = False

  def forward(self, x):
    outs = []
    for s in self.slices:
      x = s(x)
      outs.append(x)
    return outs


class VGGLoss(nn.Module):

  def __init__(self, vgg: Vgg19):
    super().__init__()
    self.vgg, self.criterion = vgg, nn.L1Loss()
    self.weights = [1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0]

  def forward(self, x, y):
    xv, yv = self.vgg(x), self.vgg(y)
    return sum(w * self.criterion(a, b.detach()) for w, a, b in zip(self.weights, xv, yv))


def vgg19_state_dict(seed=0):
  """A state dict in the layout of torchvision's vgg19-dcbb9e9d.pth (its `features`; the
  classifier is not needed), with random weights made here (never a real file)."""
  torch.manual_seed(seed)
  features = vgg19_features()
  for m in features:
    if isinstance(m, nn.Conv2d):  # He-like scale keeps activations O(1) through 16 layers
      nn.init.normal_(m.weight, 0.0, float(np.sqrt(2.0 / (m.in_channels * 9))))
      nn.init.uniform_(m.bias, -0.05, 0.05)
  return {f'features.{k}': v for k, v in features.state_dict().items()}


def get_edges(t):
  """Pix2PixHDModel.get_edges on [N, 1, H, W]."""
  edge = torch.zeros_like(t, dtype=torch.bool)
  edge[:, :, :, 1:] |= t[:, :, :, 1:] != t[:, :, :, :-1]
  edge[:, :, :, :-1] |= t[:, :, :, 1:] != t[:, :, :, :-1]
  edge[:, :, 1:, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
  edge[:, :, :-1, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
  return edge.float()


def encode_input(label, inst, label_nc):
  """Pix2PixHDModel.encode_input: one-hot [N, label_nc, H, W] (scatter_) + edges."""
  size = label.size()
  one_hot = torch.zeros(size[0], label_nc, size[2], size[3])
  one_hot = one_hot.scatter_(1, label.long(), 1.0)
  return one_hot if inst is None else torch.cat([one_hot, get_edges(inst)], 1)


def init_weights(net, seed):
  """The official weights_init: conv weights N(0, 0.02); biases left at their default."""
  torch.manual_seed(seed)
  for m in net.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      m.reset_parameters()
      m.weight.data.normal_(0.0, 0.02)
  return net


def official_losses(g, d, x, real, *, n_layers, lambda_feat=10.0, vgg_loss=None):
  """Pix2PixHDModel.forward's losses (pool_size 0; LSGAN; feature matching; VGG when
  vgg_loss is given) for the input x and the photo real: (parts, loss_g, loss_d), parts
  {'G_GAN', 'G_GAN_Feat', 'G_VGG' (0 without VGG), 'D_real', 'D_fake'} as tensors, loss_g and
  loss_d what train.py's two backward passes take."""
  mse = nn.MSELoss()
  gan = lambda preds, is_real: sum(mse(p[-1], torch.full_like(p[-1], float(is_real)))
                                   for p in preds)
  fake = g(x)
  loss_d_fake = gan(d(torch.cat([x, fake.detach()], 1)), False)
  pred_real = d(torch.cat([x, real], 1))
  loss_d_real = gan(pred_real, True)
  pred_fake = d(torch.cat([x, fake], 1))
  loss_g_gan = gan(pred_fake, True)
  feat = 0
  for i in range(len(pred_fake)):
    for j in range(len(pred_fake[i]) - 1):
      feat = feat + (1.0 / len(pred_fake)) * (4.0 / (n_layers + 1)) * nn.functional.l1_loss(
          pred_fake[i][j], pred_real[i][j].detach()) * lambda_feat
  loss_vgg = vgg_loss(fake, real) * lambda_feat if vgg_loss is not None else 0
  parts = {'G_GAN': loss_g_gan, 'G_GAN_Feat': feat, 'G_VGG': loss_vgg, 'D_real': loss_d_real,
           'D_fake': loss_d_fake}
  return parts, loss_g_gan + feat + loss_vgg, (loss_d_fake + loss_d_real) * 0.5
