"""Exports the trained generator as a TensorFlow SavedModel (jax.experimental.jax2tf).

  python -m p2p_jax.export --workdir=/tmp/p2p_facades --out_dir=/tmp/p2p_facades/saved_model \
      [--checkpoint=latest|best|STEP] [--mode=eval|paper] [--image_size=N]

The SavedModel runs without JAX (TF Serving, TFLite converters, any TF program):
  model = tf.saved_model.load(out_dir)
  y = model.generate(x)                       # eval mode: x float32 [N, H, W, Cin] in [-1, 1]
  y = model.generate(x, tf.constant(seed))    # paper mode: plus an int32 seed
  json.loads(model.metadata.numpy())          # mode, generator, checkpoint step, ...
and through the 'serving_default' signature (output key 'output').

Modes (see p2p_jax.inference): 'eval' (default here: deterministic, what serving usually
wants) or 'paper' (dropout on, BatchNorm with per-image statistics; image i of a call uses
dropout key fold_in(PRNGKey(seed), i), so the SavedModel gives exactly what
`Translator.apply(x, seed=seed)` gives). The batch size is free; height and width are
free multiples of 2**depth unless --image_size fixes them. The generator's weights are
tf.Variables (not constants baked into the graph). The computation is serialised as
StableHLO for CPU and CUDA (`platforms`).

TensorFlow is imported only inside these functions.
"""

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

from p2p_jax import config_lib, inference
from p2p_jax.models import factory

METADATA_FILE = 'p2p_jax_export.json'
DEFAULT_PLATFORMS = ('cpu', 'cuda')


def export_saved_model(config, variables, out_dir: str, mode: str = 'eval',
                       image_size: int | None = None, *, step: int | None = None,
                       platforms=DEFAULT_PLATFORMS) -> str:
  """Writes a SavedModel of the generator into `out_dir`; returns out_dir.

  config: the full config (its `model` block builds the generator).
  variables: {'params', 'batch_stats'} of the generator (inference.load_variables).
  image_size: fix height = width = image_size; None leaves them polymorphic.
  """
  inference.check_mode(mode)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel

  generator = factory.create_generator(config.model, axis_name=None)
  depth = factory.GENERATORS[config.model.generator][0]
  m, cin = 2 ** depth, config.model.in_channels
  if image_size is not None and image_size % m:
    raise ValueError(f'image_size {image_size} must be a multiple of {m} for '
                     f'{config.model.generator}')
  fn = inference.make_generator_fn(generator, mode, 'image')

  def generate(variables, x, seed):
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
        jnp.arange(x.shape[0], dtype=jnp.uint32))
    return fn(variables, x, keys)

  # Height and width as multiples of 2**depth, so the U-Net's checks hold symbolically.
  space = f'{image_size}, {image_size}' if image_size else f'{m}*h, {m}*w'
  tf_generate = jax2tf.convert(
      generate, polymorphic_shapes=[None, f'(b, {space}, {cin})', None],
      with_gradient=False, native_serialization_platforms=tuple(platforms))

  variables = inference._variables(variables)  # pylint: disable=protected-access
  module = tf.Module()
  module.variables_tf = tf.nest.map_structure(
      lambda a: tf.Variable(jax.device_get(a), trainable=False), variables)
  size = image_size if image_size else None
  x_spec = tf.TensorSpec([None, size, size, cin], tf.float32, name='images')
  if mode == 'eval':
    module.generate = tf.function(
        lambda x: tf_generate(module.variables_tf, x, tf.constant(0, tf.int32)),
        input_signature=[x_spec], autograph=False)
    serving = tf.function(lambda images: {'output': module.generate(images)},
                          input_signature=[x_spec], autograph=False)
  else:
    s_spec = tf.TensorSpec([], tf.int32, name='seed')
    module.generate = tf.function(
        lambda x, seed: tf_generate(module.variables_tf, x, seed),
        input_signature=[x_spec, s_spec], autograph=False)
    serving = tf.function(lambda images, seed: {'output': module.generate(images, seed)},
                          input_signature=[x_spec, s_spec], autograph=False)

  metadata = {
      'format': 'p2p_jax generator SavedModel', 'mode': mode,
      'bn_scope': 'image' if mode == 'paper' else 'running_average',
      'generator': config.model.generator, 'in_channels': cin,
      'out_channels': config.model.out_channels, 'size_multiple': m,
      'image_size': image_size, 'checkpoint_step': step,
      'platforms': list(platforms), 'value_range': '[-1, 1] in and out',
      'inputs': 'images float32 [N, H, W, C]' + (', seed int32 []' if mode == 'paper' else ''),
  }
  module.metadata = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False)
  tf.saved_model.save(module, out_dir, signatures={'serving_default': serving})
  with open(os.path.join(out_dir, METADATA_FILE), 'w') as f:
    json.dump(metadata, f, indent=2, sort_keys=True)
  return out_dir


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m p2p_jax.export',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True)
  p.add_argument('--out_dir', default=None, help='default: WORKDIR/saved_model_<mode>')
  p.add_argument('--checkpoint', default='latest',
                 type=lambda v: int(v) if v.isdigit() else v)
  p.add_argument('--mode', choices=inference.MODES, default='eval')
  p.add_argument('--image_size', type=int, default=None,
                 help='fix height = width; default: any multiple of 2**depth')
  p.add_argument('--platforms', default=','.join(DEFAULT_PLATFORMS),
                 help='comma-separated: cpu, cuda, rocm, tpu')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    config = config_lib.load_workdir_config(args.workdir)
    step, variables = inference.load_variables(args.workdir, args.checkpoint)
    out_dir = args.out_dir or os.path.join(args.workdir, f'saved_model_{args.mode}')
    export_saved_model(config, variables, out_dir, args.mode, args.image_size, step=step,
                       platforms=tuple(p for p in args.platforms.split(',') if p))
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'SavedModel ({args.mode} mode, checkpoint step {step}) written to {out_dir}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
