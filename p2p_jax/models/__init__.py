"""pix2pix networks: the U-Net generator and the PatchGAN discriminator.

`create_generator` / `create_discriminator` build them from a config's `model` block.
"""

from p2p_jax.models.factory import create_discriminator, create_generator, GENERATORS
from p2p_jax.models.patchgan import PatchGAN, layer_specs, receptive_field
from p2p_jax.models.unet import UNet, dropout_layers

__all__ = ['UNet', 'PatchGAN', 'layer_specs', 'receptive_field', 'dropout_layers',
           'create_generator', 'create_discriminator', 'GENERATORS']
