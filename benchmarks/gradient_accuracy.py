"""How accurate each conv form's training gradients are, against float64.

  PYTHONPATH=. python benchmarks/gradient_accuracy.py --net D --batch 4
  PYTHONPATH=. python benchmarks/gradient_accuracy.py --net G --batch 1 --impls xla,auto,winograd

The paper's networks at 256 px (unet_256, 70x70 PatchGAN; batch statistics, dropout on),
random inputs in [-1, 1], loss sum(out * cos(out)); parameter gradients in float32 for each
`conv_impl`, compared with the same network in float64 on XLA's plain convs.

pix2pix's ReLUs and LeakyReLUs have no derivative at 0: an input within rounding of 0 takes
one slope in one computation and the other in another, and one such element moves a
kernel gradient by up to a few % (the tests' tiny networks rarely have one). Which inputs
flip depends on every rounding upstream, so two float32 forms, or XLA's conv against
float64, differ by that much at random places. Each float32 run is therefore compared with
float64 twice: with the activation slopes float64 chooses itself (`free`: rounding and
flips) and with the float32 run's own slopes replayed (`matched`: the rounding alone).

Prints one JSON line per impl: for both comparisons the largest relative difference of a
leaf (max |diff| / max |float64|) and that leaf, and `flips`, the activation inputs whose
sign differs from float64's. Runtime on a 2-vCPU machine: 1-4 minutes per impl.
"""

import argparse
import functools
import json

import jax

jax.config.update('jax_enable_x64', True)  # before any array exists

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from p2p_jax import kernels  # noqa: E402
from p2p_jax.models import PatchGAN, UNet, layers  # noqa: E402

_leaky_relu, _relu = nn.leaky_relu, nn.relu


class ActivationPattern:
  """Stands in for flax's relu / leaky_relu (the models call them as nn.relu and
  nn.leaky_relu; they have no hook of their own): records each call's positive-side mask,
  or replays masks given to `replay` in call order."""

  def __init__(self):
    self.recorded, self._replay = [], []

  def replay(self, masks):
    self._replay = list(masks)

  def leaky_relu(self, t, negative_slope=0.01):
    if self._replay:
      return jnp.where(self._replay.pop(0), t, negative_slope * t)
    self.recorded.append(t >= 0)
    return _leaky_relu(t, negative_slope)

  def relu(self, t):
    if self._replay:
      return jnp.where(self._replay.pop(0), t, jnp.zeros_like(t))
    self.recorded.append(t > 0)
    return _relu(t)


def make_net(name, impl, dtype):
  """The paper's D or G (as the default config builds them), constructed directly because
  float64 is no `compute.dtype` of the configs."""
  convs = kernels.convolutions(impl)
  conv = functools.partial(layers.Conv, op=convs.conv2d)
  if name == 'D':
    return PatchGAN(conv=conv, dtype=dtype)
  return UNet(depth=8, ngf=64, in_channels=3, out_channels=3, conv=conv, dtype=dtype,
              conv_transpose=functools.partial(layers.ConvTranspose4x4,
                                               op=convs.conv_transpose))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--net', default='D', choices=['D', 'G'])
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--impls', default='xla,auto', help='comma-separated conv_impl values')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  kx, ky, kp, kd = jax.random.split(jax.random.PRNGKey(args.seed), 4)
  shape = (args.batch, args.image_size, args.image_size, 3)
  x = jax.random.uniform(kx, shape, jnp.float32, -1, 1)
  y = jax.random.uniform(ky, shape, jnp.float32, -1, 1)
  inputs = (x, y) if args.net == 'D' else (x,)
  variables = make_net(args.net, 'xla', jnp.float32).init(
      {'params': kp, 'dropout': kd}, *inputs, train=True)
  pattern = ActivationPattern()
  nn.leaky_relu, nn.relu = pattern.leaky_relu, pattern.relu

  def run(impl, dtype, masks=None):
    """(float32-cast parameter gradients, activation masks) of one form in one dtype."""
    net = make_net(args.net, impl, dtype)
    cast = lambda tree: jax.tree.map(lambda a: a.astype(dtype), tree)

    def loss(params):
      out, _ = net.apply({'params': params, 'batch_stats': cast(variables['batch_stats'])},
                         *cast(inputs), train=True, rngs={'dropout': kd},
                         mutable=['batch_stats'])
      out = out.astype(dtype)
      return jnp.sum(out * jnp.cos(out))

    if masks is None:
      def forward(params):
        pattern.recorded.clear()
        loss(params)
        return list(pattern.recorded)
      masks = jax.jit(forward)(cast(variables['params']))
      pattern.recorded.clear()

    def grads(params, masks):
      pattern.replay(masks)
      return jax.grad(loss)(params)
    return jax.jit(grads)(cast(variables['params']), masks), masks

  def worst(grads, ref):
    diffs = [(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64)))
                    / np.max(np.abs(np.asarray(r, np.float64)))), jax.tree_util.keystr(path))
             for (path, r), g in zip(jax.tree_util.tree_leaves_with_path(ref),
                                     jax.tree.leaves(grads))]
    return max(diffs)

  ref_free, ref_masks = run('xla', jnp.float64)
  for impl in args.impls.split(','):
    grads, masks = run(impl, jnp.float32)
    ref_matched, _ = run('xla', jnp.float64, masks)
    free, matched = worst(grads, ref_free), worst(grads, ref_matched)
    flips = sum(int(jnp.sum(a != b)) for a, b in zip(masks, ref_masks))
    print(json.dumps({
        'net': args.net, 'batch': args.batch, 'image_size': args.image_size,
        'conv_impl': impl, 'backend': jax.default_backend(),
        'free_max_rel': free[0], 'free_leaf': free[1],
        'matched_max_rel': matched[0], 'matched_leaf': matched[1], 'flips': flips}),
          flush=True)


if __name__ == '__main__':
  main()
