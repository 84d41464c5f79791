"""The networks as the papers describe them: pix2pix's U-Net generator and PatchGAN
discriminator, CycleGAN's ResNet generator, built from the layers in `layers.py`.

`p2p_jax.networks` builds them from a config (names, compute dtype, and the convolutions
`p2p_jax.kernels` picks for the backend).
"""

from p2p_jax.models.patchgan import PatchGAN, layer_specs, receptive_field
from p2p_jax.models.resnet import RESNET_GENERATORS, ResnetGenerator
from p2p_jax.models.unet import DROPOUT_PLACEMENTS, GENERATORS, UNet, dropout_layers

__all__ = ['UNet', 'PatchGAN', 'ResnetGenerator', 'layer_specs', 'receptive_field',
           'dropout_layers', 'GENERATORS', 'RESNET_GENERATORS', 'DROPOUT_PLACEMENTS']
