"""The pix2pix networks as the paper describes them: the U-Net generator and the PatchGAN
discriminator, built from the layers in `layers.py`.

`p2p_jax.networks` builds them from a config (names, compute dtype, and the convolutions
`p2p_jax.kernels` picks for the backend).
"""

from p2p_jax.models.patchgan import PatchGAN, layer_specs, receptive_field
from p2p_jax.models.unet import DROPOUT_PLACEMENTS, GENERATORS, UNet, dropout_layers

__all__ = ['UNet', 'PatchGAN', 'layer_specs', 'receptive_field', 'dropout_layers',
           'GENERATORS', 'DROPOUT_PLACEMENTS']
