"""p2p_jax: pix2pix (Isola et al., CVPR 2017) in JAX/Flax.

Importing the package is cheap: TensorFlow is loaded only by the input pipeline and the
SavedModel export, so training and inference run on machines without it.
"""

__version__ = '0.1.0'
