"""The arithmetic of pix2pixHD's training step and inference, per image, counted from the
jaxpr (benchmarks/flops.py: convolutions and matrix products, 2 FLOPs per multiply-add);
nothing runs, nothing is allocated.

  python benchmarks/pix2pixhd_flops.py

for the CPU demo (configs/pix2pixhd_demo.py, 128 px) and the two Cityscapes recipes
(configs/pix2pixhd_cityscapes_512p.py at 1024x512, _1024p.py at 2048x1024), with and
without the VGG19 term.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from benchmarks import flops
from p2p_jax import config_schema, networks
from p2p_jax.methods import pix2pixhd
from p2p_jax.models import vgg19

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = (('pix2pixhd_demo.py', 128, 128), ('pix2pixhd_cityscapes_512p.py', 512, 1024),
         ('pix2pixhd_cityscapes_1024p.py', 1024, 2048))


def step_gflop(config, height: int, width: int, batch: int = 1) -> tuple[float, float]:
  """(training step, generator forward) GFLOP for one batch of `batch` images."""
  config.compute.conv_impl = 'xla'
  setup = pix2pixhd.METHOD.setup(config, 1, 'batch')
  state = jax.eval_shape(setup.init)
  hd = config.pix2pixhd
  spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct((batch,) + shape, dtype)
  b = {'target': spec((height, width, 3))}
  if hd.label_nc:
    b['label'] = spec((height, width), jnp.int32)
  else:
    b['input'] = spec((height, width, config.model.in_channels))
  if hd.instance_map:
    b['instance'] = spec((height, width), jnp.int32)
  args = [state, b]
  if hd.vgg_loss:
    args.append({i: (jax.ShapeDtypeStruct((3, 3, c, o), jnp.float32),
                     jax.ShapeDtypeStruct((o,), jnp.float32))
                 for i, (o, c) in vgg19.CONV_SHAPES.items()})
  train = flops.gflop(setup.step, *args, axis_env=[('batch', 1)])
  g = networks.create_generator(config)
  x = spec((height, width, networks.hd_input_channels(config)))
  forward = flops.gflop(lambda p, x: g.apply({'params': p}, x), state.g.params['G'], x)
  return train, forward


def main():
  for name, height, width in CASES:
    for vgg in (False, True):
      config = config_schema.load_file(os.path.join(ROOT, 'configs', name))
      config.pix2pixhd.vgg_loss = vgg
      train, forward = step_gflop(config, height, width)
      print(f'{name:34s} {width}x{height} VGG {"on " if vgg else "off"}: train step '
            f'{train:8.1f} GFLOP/image, generator forward {forward:7.1f} GFLOP/image')


if __name__ == '__main__':
  main()
