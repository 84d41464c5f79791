"""CycleGAN's image pool: the discriminators learn from a history of generated images.

Shrivastava et al. (2017), as CycleGAN's reference implements it (util/image_pool.py of
junyanz/pytorch-CycleGAN-and-pix2pix): for each new fake, in order,
  * while the pool holds fewer than `pool_size` images, store it and return it;
  * once full, with probability 0.5 return a stored image picked uniformly at random and
    store the new one in its place; otherwise return the new one.
pool_size 0 returns the fakes as they are.

Here the pool is an array in the training state (saved in checkpoints, restored on resume)
and the coin flips and picks are drawn from a JAX key (`draws`), not Python's `random`, so a
seed fixes them and a resumed run draws the same. `query` takes the draws as arguments, so
a test can hand the same ones to the reference's algorithm.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Pool(NamedTuple):
  """images: [pool_size, H, W, C] (slots >= count are unused zeros); count: int32 scalar."""
  images: jax.Array
  count: jax.Array


def empty(pool_size: int, image_shape: tuple[int, ...]) -> Pool:
  """A pool of `pool_size` slots for images of shape [H, W, C], holding none."""
  return Pool(jnp.zeros((pool_size,) + tuple(image_shape), jnp.float32),
              jnp.zeros((), jnp.int32))


def draws(key: jax.Array, n: int, pool_size: int) -> tuple[jax.Array, jax.Array]:
  """(coin [n] uniform in [0, 1), pick [n] int32 in [0, pool_size)): the randomness of one
  query of n images (the reference's random.uniform(0, 1) and randint(0, pool_size - 1))."""
  k_coin, k_pick = jax.random.split(key)
  coin = jax.random.uniform(k_coin, (n,), jnp.float32)
  pick = jax.random.randint(k_pick, (n,), 0, max(pool_size, 1), jnp.int32)
  return coin, pick


def query(pool: Pool, images: jax.Array, coin: jax.Array, pick: jax.Array
          ) -> tuple[jax.Array, Pool]:
  """(the images D sees, the updated pool) for new fakes `images` [n, H, W, C], one at a
  time in order, with the draws of `draws` (coin > 0.5 swaps once the pool is full)."""
  pool_size = pool.images.shape[0]
  if pool_size == 0:
    return images, pool

  def one(carry, x):
    stored, count = carry
    image, c, p = x
    filling = count < pool_size
    swap = jnp.logical_and(jnp.logical_not(filling), c > 0.5)
    slot = jnp.where(filling, count, p)
    old = stored[slot]
    out = jnp.where(swap, old, image)
    stored = stored.at[slot].set(jnp.where(jnp.logical_or(filling, swap), image, old))
    return (stored, count + filling.astype(jnp.int32)), out

  (stored, count), out = jax.lax.scan(
      one, (pool.images, pool.count), (images.astype(jnp.float32), coin, pick))
  return out.astype(images.dtype), Pool(stored, count)
