"""Builds the networks of a config: the named generator (U-Net or ResNet) and the PatchGAN.

The architecture comes from `config.model` (and `config.loss.conditional`, which decides
whether D sees x); how it is computed from `config.compute`: the dtype, and the
convolutions `p2p_jax.kernels` picks for the backend, handed to the networks as the layer
modules to use. Neither changes the parameters.
"""

import functools

import jax.numpy as jnp

from p2p_jax import kernels
from p2p_jax.models import (GENERATORS, RESNET_GENERATORS, PatchGAN, ResnetGenerator, UNet,
                            layers)

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# config.model.generator: the U-Nets (pix2pix) and the ResNets (CycleGAN), any for any method.
GENERATOR_NAMES = (*GENERATORS, *RESNET_GENERATORS)


def size_multiple(generator: str) -> int:
  """Image height and width must be multiples of this for the generator named."""
  if generator in RESNET_GENERATORS:
    return 2 ** ResnetGenerator.n_downsampling
  return 2 ** GENERATORS[generator][0]


def _bn_axis(config, axis_name):
  sync = config.model.sync_batch_stats and config.model.norm == 'batch'
  return axis_name if sync else None


def _layers(config):
  """(Conv, the decoder's upsampling layer) with the convolutions chosen for this backend."""
  convs = kernels.convolutions(config.compute.conv_impl)
  upsample = layers.UPSAMPLERS[config.model.upsample]
  return (functools.partial(layers.Conv, op=convs.conv2d),
          functools.partial(upsample, op=convs.conv_transpose))


def create_generator(config, axis_name: str | None = None, *, in_channels: int | None = None,
                     out_channels: int | None = None):
  """The generator named by `config.model.generator` (a UNet or a ResnetGenerator).

  axis_name: the device axis the step is mapped over; BatchNorm averages its batch
  statistics over it when `config.model.sync_batch_stats` is set.
  in_channels, out_channels: instead of the config's (CycleGAN's G_B maps back).
  """
  model = config.model
  in_channels = model.in_channels if in_channels is None else in_channels
  out_channels = model.out_channels if out_channels is None else out_channels
  if model.generator in RESNET_GENERATORS:
    convs = kernels.convolutions(config.compute.conv_impl)
    return ResnetGenerator(
        n_blocks=RESNET_GENERATORS[model.generator], ngf=model.ngf, in_channels=in_channels,
        out_channels=out_channels, norm=model.norm, dropout=model.dropout,
        bn_axis_name=_bn_axis(config, axis_name), dtype=DTYPES[config.compute.dtype],
        conv=functools.partial(layers.Conv, op=convs.conv2d),
        conv_transpose=functools.partial(layers.ConvTranspose3x3,
                                         op=convs.conv_transpose_3x3))
  depth, skips = GENERATORS[model.generator]
  conv, conv_transpose = _layers(config)
  return UNet(depth=depth, ngf=model.ngf, in_channels=in_channels,
              out_channels=out_channels, norm=model.norm, dropout=model.dropout,
              dropout_placement=model.dropout_placement, skips=skips,
              bn_axis_name=_bn_axis(config, axis_name), dtype=DTYPES[config.compute.dtype],
              conv=conv, conv_transpose=conv_transpose)


def create_discriminator(config, axis_name: str | None = None, *,
                         x_channels: int | None = None,
                         y_channels: int | None = None) -> PatchGAN:
  """The PatchGAN of `config.model.d_layers` layers; with `config.loss.conditional` off
  (the paper's unconditional ablation) it sees only y.

  x_channels, y_channels: instead of what the config implies (CycleGAN's Ds see one
  image of either domain: x_channels=0).
  """
  model = config.model
  conv, _ = _layers(config)
  if x_channels is None:
    x_channels = model.in_channels if config.loss.conditional else 0
  return PatchGAN(n_layers=model.d_layers, ndf=model.ndf, x_channels=x_channels,
                  y_channels=model.out_channels if y_channels is None else y_channels,
                  norm=model.norm,
                  bn_axis_name=_bn_axis(config, axis_name),
                  dtype=DTYPES[config.compute.dtype], conv=conv)
