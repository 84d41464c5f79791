"""Builds the two networks of a config: the named generator and the matching PatchGAN.

The architecture comes from `config.model` (and `config.loss.conditional`, which decides
whether D sees x); how it is computed from `config.compute`: the dtype, and the
convolutions `p2p_jax.kernels` picks for the backend, handed to the networks as the layer
modules to use. Neither changes the parameters.
"""

import functools

import jax.numpy as jnp

from p2p_jax import kernels
from p2p_jax.models import GENERATORS, PatchGAN, UNet, layers

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _bn_axis(config, axis_name):
  sync = config.model.sync_batch_stats and config.model.norm == 'batch'
  return axis_name if sync else None


def _layers(config):
  """(Conv, the decoder's upsampling layer) with the convolutions chosen for this backend."""
  convs = kernels.convolutions(config.compute.conv_impl)
  upsample = layers.UPSAMPLERS[config.model.upsample]
  return (functools.partial(layers.Conv, op=convs.conv2d),
          functools.partial(upsample, op=convs.conv_transpose))


def create_generator(config, axis_name: str | None = None) -> UNet:
  """The generator named by `config.model.generator`.

  axis_name: the device axis the step is mapped over; BatchNorm averages its batch
  statistics over it when `config.model.sync_batch_stats` is set.
  """
  model = config.model
  depth, skips = GENERATORS[model.generator]
  conv, conv_transpose = _layers(config)
  return UNet(depth=depth, ngf=model.ngf, in_channels=model.in_channels,
              out_channels=model.out_channels, norm=model.norm, dropout=model.dropout,
              dropout_placement=model.dropout_placement, skips=skips,
              bn_axis_name=_bn_axis(config, axis_name), dtype=DTYPES[config.compute.dtype],
              conv=conv, conv_transpose=conv_transpose)


def create_discriminator(config, axis_name: str | None = None) -> PatchGAN:
  """The PatchGAN of `config.model.d_layers` layers; with `config.loss.conditional` off
  (the paper's unconditional ablation) it sees only y."""
  model = config.model
  conv, _ = _layers(config)
  return PatchGAN(n_layers=model.d_layers, ndf=model.ndf,
                  x_channels=model.in_channels if config.loss.conditional else 0,
                  y_channels=model.out_channels, norm=model.norm,
                  bn_axis_name=_bn_axis(config, axis_name),
                  dtype=DTYPES[config.compute.dtype], conv=conv)
