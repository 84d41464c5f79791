"""Builds the two networks from a config: named generators and the matching discriminator."""

import jax.numpy as jnp

from p2p_jax.models.layers import CONV_IMPLS
from p2p_jax.models.patchgan import PatchGAN
from p2p_jax.models.unet import UNet

# name -> (depth, skips). unet_256 / unet_128 are the paper's and the PyTorch reference's;
# encoder_decoder_* is the paper's no-skip ablation; the 32 and 64 px variants exist for
# fast tests and demos. The number is the smallest image side the network takes.
GENERATORS = {
    f'{kind}_{2 ** depth}': (depth, kind == 'unet')
    for kind in ('unet', 'encoder_decoder') for depth in (5, 6, 7, 8)
}

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def _dtype(model_config):
  if model_config.dtype not in DTYPES:
    raise ValueError(f'model.dtype must be one of {sorted(DTYPES)}, got {model_config.dtype!r}')
  return DTYPES[model_config.dtype]


def _conv_impl(model_config):
  impl = model_config.get('conv_impl', 'auto')  # configs saved before the field existed
  if impl not in CONV_IMPLS:
    raise ValueError(f'model.conv_impl must be one of {CONV_IMPLS}, got {impl!r}')
  return impl


def _bn_axis(model_config, axis_name):
  return axis_name if (model_config.sync_batch_stats and model_config.norm == 'batch') else None


def create_generator(model_config, axis_name: str | None = None) -> UNet:
  """Returns the generator named by `model_config.generator`.

  axis_name: the device axis the train step is mapped over; BatchNorm averages its batch
  statistics over it when `model_config.sync_batch_stats` is set.
  """
  if model_config.generator not in GENERATORS:
    raise ValueError(f'model.generator must be one of {sorted(GENERATORS)}, '
                     f'got {model_config.generator!r}')
  depth, skips = GENERATORS[model_config.generator]
  return UNet(depth=depth, ngf=model_config.ngf, in_channels=model_config.in_channels,
              out_channels=model_config.out_channels, norm=model_config.norm,
              dropout=model_config.dropout, dropout_placement=model_config.dropout_placement,
              skips=skips, bn_axis_name=_bn_axis(model_config, axis_name),
              dtype=_dtype(model_config), conv_impl=_conv_impl(model_config))


def create_discriminator(model_config, conditional: bool = True,
                         axis_name: str | None = None) -> PatchGAN:
  """Returns the PatchGAN of `model_config.d_layers` layers; unconditional sees only y."""
  return PatchGAN(n_layers=model_config.d_layers, ndf=model_config.ndf,
                  x_channels=model_config.in_channels if conditional else 0,
                  y_channels=model_config.out_channels, norm=model_config.norm,
                  bn_axis_name=_bn_axis(model_config, axis_name), dtype=_dtype(model_config),
                  conv_impl=_conv_impl(model_config))
