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
                            feature_encoder, layers)
from p2p_jax.models.feature_encoder import FeatureEncoder
from p2p_jax.models.multiscale_d import MultiscaleDiscriminator
from p2p_jax.models.pix2pixhd import HD_GENERATORS, GlobalGenerator, LocalEnhancer

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# config.model.generator: the U-Nets (pix2pix) and the ResNets (CycleGAN), any for any
# method; pix2pixHD's global generator and local enhancer (method pix2pixhd only).
GENERATOR_NAMES = (*GENERATORS, *RESNET_GENERATORS, *HD_GENERATORS)


def size_multiple(generator: str, config=None) -> int:
  """Image height and width must be multiples of this for the generator named (pix2pixHD's
  depend on config.pix2pixhd: 2**n_downsample_global, times 2**n_local_enhancers)."""
  if generator in RESNET_GENERATORS:
    return 2 ** ResnetGenerator.n_downsampling
  if generator in HD_GENERATORS:
    hd = config.pix2pixhd
    local = hd.n_local_enhancers if generator == 'pix2pixhd_local' else 0
    # With the feature encoder, its input (the same photo) must be a multiple of its own.
    e = hd.n_downsample_E if uses_features(config) else 0
    return 2 ** max(hd.n_downsample_global + local, e)
  return 2 ** GENERATORS[generator][0]


def hd_input_channels(config) -> int:
  """Channels of pix2pixHD's encoded input (what D sees beside the image): label_nc
  one-hot (or model.in_channels with label_nc 0), + 1 for the instance edges."""
  hd = config.pix2pixhd
  return (hd.label_nc or config.model.in_channels) + (1 if hd.instance_map else 0)


def uses_features(config) -> bool:
  """pix2pixHD with the instance-wise feature encoder (instance_feat or label_feat)."""
  hd = config.pix2pixhd
  return bool(hd.instance_feat or hd.label_feat)


def hd_generator_channels(config) -> int:
  """Channels of pix2pixHD's generator input: `hd_input_channels`, + feat_num encoded
  features with the feature encoder (the official netG_input_nc)."""
  return hd_input_channels(config) + (config.pix2pixhd.feat_num if uses_features(config)
                                      else 0)


def create_feature_encoder(config) -> FeatureEncoder:
  """pix2pixHD's E (models/feature_encoder.py): the photo (model.out_channels) -> feat_num
  instance-wise mean features, nef filters, n_downsample_E stride-2 convs."""
  hd = config.pix2pixhd
  conv, conv_transpose = _hd_layers(config)
  return feature_encoder.create(hd.nef, hd.n_downsample_E, config.model.out_channels,
                                hd.feat_num, DTYPES[config.compute.dtype], conv=conv,
                                conv_transpose=conv_transpose)


def _hd_layers(config):
  """pix2pixHD's conv layers: biases at PyTorch's default init (its weights_init); on
  CPU its narrow first layers in GEMM forms (kernels.cpu_conv_form's narrow_gemm)."""
  convs = kernels.convolutions(config.compute.conv_impl, narrow_gemm=True)
  return (functools.partial(layers.Conv, op=convs.conv2d, bias_init='torch'),
          functools.partial(layers.ConvTranspose3x3, op=convs.conv_transpose_3x3,
                            bias_init='torch'))


def _create_hd_generator(config, in_channels: int | None, out_channels: int | None):
  model, hd = config.model, config.pix2pixhd
  conv, conv_transpose = _hd_layers(config)
  kwargs = dict(in_channels=hd_generator_channels(config) if in_channels is None
                else in_channels,
                out_channels=model.out_channels if out_channels is None else out_channels,
                remat=hd.remat, dtype=DTYPES[config.compute.dtype], conv=conv,
                conv_transpose=conv_transpose)
  if model.generator == 'pix2pixhd_global':
    return GlobalGenerator(ngf=model.ngf, n_downsampling=hd.n_downsample_global,
                           n_blocks=hd.n_blocks_global, **kwargs)
  return LocalEnhancer(ngf=model.ngf, n_downsample_global=hd.n_downsample_global,
                       n_blocks_global=hd.n_blocks_global,
                       n_local_enhancers=hd.n_local_enhancers,
                       n_blocks_local=hd.n_blocks_local, **kwargs)


def create_multiscale_discriminator(config) -> MultiscaleDiscriminator:
  """pix2pixHD's D: config.pix2pixhd.num_D PatchGANs of config.model.d_layers layers on
  concat(encoded input, image)."""
  conv, _ = _hd_layers(config)
  return MultiscaleDiscriminator(
      num_D=config.pix2pixhd.num_D, n_layers=config.model.d_layers, ndf=config.model.ndf,
      in_channels=hd_input_channels(config) + config.model.out_channels,
      dtype=DTYPES[config.compute.dtype], conv=conv)


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
  """The generator named by `config.model.generator` (a UNet, a ResnetGenerator, or
  pix2pixHD's GlobalGenerator / LocalEnhancer, whose input channels default to
  `hd_generator_channels`).

  axis_name: the device axis the step is mapped over; BatchNorm averages its batch
  statistics over it when `config.model.sync_batch_stats` is set.
  in_channels, out_channels: instead of the config's (CycleGAN's G_B maps back).
  """
  model = config.model
  if model.generator in HD_GENERATORS:
    return _create_hd_generator(config, in_channels, out_channels)
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
