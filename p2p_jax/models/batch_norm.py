"""BatchNorm whose running variance is updated as PyTorch's BatchNorm2d updates it.

PyTorch and Flax normalise a training batch alike (mean and *biased* variance of the batch)
but differ in the running average kept for eval mode: BatchNorm2d mixes in the unbiased
batch variance, var * n / (n - 1), where n is the number of values per channel (batch x
height x width); flax.linen.BatchNorm mixes in the biased one. At pix2pix's batch size 1 the
innermost normalised layers see few values per channel (n = 4 at 2 x 2 pixels), so the two
running variances differ by up to 4/3, and eval-mode outputs with them.

`BatchNorm` below is flax.linen.BatchNorm's computation with that one change. Its variables
have flax's names and shapes (params scale and bias, batch_stats mean and var), so
checkpoints written with nn.BatchNorm load unchanged, and in train mode its output is the
same computation in the same order as nn.BatchNorm's (tests/test_batch_norm.py).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def _bessel(n):
  """n / (n - 1); n == 1 (PyTorch refuses to train on it) gives 1: the biased variance, 0.

  n is an int, or a symbolic dimension expression under shape-polymorphic export.
  """
  if isinstance(n, int):
    return n / max(n - 1, 1)
  n = jnp.asarray(n, jnp.float32)
  return n / jnp.maximum(n - 1, 1)


class BatchNorm(nn.Module):
  """Batch normalisation over every axis but the last, PyTorch's running statistics.

  Attributes:
    use_running_average: True normalises with the running averages (eval mode); False
      with the statistics of the batch, and updates the running averages (unless the module
      is being initialised).
    momentum: weight of the old running average (Flax's convention; PyTorch's momentum 0.1
      is 0.9 here).
    epsilon: added to the variance before the square root.
    dtype: dtype of the result; the statistics are computed in at least float32.
    param_dtype: dtype of scale and bias.
    scale_init, bias_init: initialisers of the affine parameters.
    axis_name: mapped axis (pmap / shard_map) over which the batch statistics are averaged,
      so that N devices normalise like one device holding the whole batch; the count n of the
      running variance's correction is then the global one.
  """
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises x [..., C] per channel C and applies scale and bias."""
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    scale = self.param('scale', self.scale_init, (features,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (features,), self.param_dtype)

    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      # Statistics in at least float32, E[x^2] - E[x]^2 in one pass (as Flax); across
      # devices both moments are averaged with a single collective.
      stat_dtype = jnp.promote_types(self.dtype or x.dtype, jnp.float32)
      xf = x.astype(stat_dtype)
      moments = jnp.stack([xf.mean(axes), jax.lax.square(xf).mean(axes)])
      n = 1
      for a in axes:
        n = n * x.shape[a]
      # At init the mapped axis may not exist yet (Flax does the same).
      if self.axis_name is not None and not self.is_initializing():
        moments = jax.lax.pmean(moments, self.axis_name)
        n = n * jax.lax.axis_size(self.axis_name)
      mean = moments[0]
      # Clipped at 0: the one-pass formula can round slightly below.
      var = jnp.maximum(0.0, moments[1] - jax.lax.square(mean))
      if not self.is_initializing():
        # The one change from Flax: the running variance takes the unbiased estimate, as
        # PyTorch's.
        unbiased = var * _bessel(n)
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * mean
        ra_var.value = m * ra_var.value + (1 - m) * unbiased

    # (x - mean) * (rsqrt(var + eps) * scale) + bias: Flax's order of operations, so train
    # mode gives nn.BatchNorm's results to the last bit.
    shape = (1,) * (x.ndim - 1) + (features,)
    y = x - mean.reshape(shape)
    mul = jax.lax.rsqrt(var + self.epsilon).reshape(shape) * scale.reshape(shape)
    y = y * mul + bias.reshape(shape)
    dtype = self.dtype or jnp.result_type(x, scale, bias)
    return y.astype(dtype)
