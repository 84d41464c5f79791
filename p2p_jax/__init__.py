"""p2p_jax: pix2pix (Isola et al., CVPR 2017) in JAX/Flax.

Importing the package is cheap, and TensorFlow is never needed to train, evaluate or
translate: datasets are prepared and read through TFDS alone. Only the SavedModel export
(p2p_jax.export) imports TensorFlow.
"""

__version__ = '0.1.0'
