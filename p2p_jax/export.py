r"""Exports the trained generator as a TensorFlow SavedModel (jax.experimental.jax2tf).

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
`TrainedGenerator.apply(x, seed=seed)` gives). The batch size is free; height and width are
free multiples of 2**depth unless --image_size fixes them. The generator's weights are
tf.Variables (not constants baked into the graph). The computation is serialised as
StableHLO for CPU and CUDA (`platforms`).

TensorFlow is imported only inside these functions.
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command at once with one line (a
  # KeyboardInterrupt raised during the imports can be lost in a garbage-collection
  # callback, and the command go on); the SavedModel appears only whole (stopping.py).
  from p2p_jax import stopping as _stopping  # pylint: disable=g-import-not-at-top
  _stopping.stop_at_once('p2p_jax.export',
                         'no SavedModel written; its folder is as it was')
  # Before JAX and the rest are imported: an offline first use of --pretrained=NAME
  # fails in a second (pytorch/pretrained.py).
  import sys  # pylint: disable=g-import-not-at-top
  from p2p_jax.pytorch import pretrained as _pretrained  # pylint: disable=g-import-not-at-top
  _pretrained.exit_if_unreachable(sys.argv[1:], 'p2p_jax.export')

import errno
import json
import os
import shutil
import sys

from absl import flags
import jax
import jax.numpy as jnp

from p2p_jax import cli, inference, methods, stopping, workdirs

METADATA_FILE = 'p2p_jax_export.json'
DEFAULT_PLATFORMS = ('cpu', 'cuda')


def _tensorflow():
  """TensorFlow, kept off every GPU and TPU (those belong to JAX), or a one-line error."""
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ImportError("the SavedModel export needs TensorFlow: pip install 'p2p_jax[export]' "
                      '(or any tensorflow build); training and inference do not') from None
  try:
    tf.config.set_visible_devices([], 'GPU')
    tf.config.set_visible_devices([], 'TPU')
  except (RuntimeError, ValueError):
    pass  # already initialised (hidden by an earlier call), or no such device type
  return tf


def export_saved_model(config, variables, out_dir: str, mode: str = 'eval',
                       image_size: int | None = None, *, step: int | None = None,
                       platforms=DEFAULT_PLATFORMS, direction: str = 'AtoB') -> str:
  """Writes a SavedModel of the generator into `out_dir`; returns out_dir.

  config: the run's config (its `model` and `compute` blocks build the generator).
  variables: {'params', 'batch_stats'} of the generator of `direction` (for CycleGAN,
    methods.get(config).generator_variables of workdirs.load_generator_variables).
  image_size: fix height = width = image_size; None leaves them polymorphic.
  """
  _check_out_dir(out_dir)
  tf = _tensorflow()
  from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel

  generator = methods.get(config).generator(config, direction)
  m, cin = generator.size_multiple, generator.in_channels
  if image_size is not None and image_size % m:
    raise ValueError(f'image_size {image_size} must be a multiple of {m} for '
                     f'{config.model.generator}')
  fn = inference.make_generator_fn(generator, mode, 'image')

  def generate(variables, x, seed):
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(
        jnp.arange(x.shape[0], dtype=jnp.uint32))
    return fn(variables, x, keys)

  # Height and width as multiples of `m`, so the generator's checks hold symbolically.
  space = f'{image_size}, {image_size}' if image_size else f'{m}*h, {m}*w'
  tf_generate = jax2tf.convert(
      generate, polymorphic_shapes=[None, f'(b, {space}, {cin})', None],
      with_gradient=False, native_serialization_platforms=tuple(platforms))

  variables = inference.apply_variables(variables)
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
      'out_channels': generator.out_channels, 'size_multiple': m,
      'image_size': image_size, 'checkpoint_step': step,
      'platforms': list(platforms), 'value_range': '[-1, 1] in and out',
      'method': config.method, 'direction': direction,
      'inputs': 'images float32 [N, H, W, C]' + (', seed int32 []' if mode == 'paper' else ''),
  }
  module.metadata = tf.Variable(json.dumps(metadata, sort_keys=True), trainable=False)

  def save(folder):
    try:
      tf.saved_model.save(module, folder, signatures={'serving_default': serving})
    except tf.errors.ResourceExhaustedError as e:  # TensorFlow's word for a full disk
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), out_dir) from e
    with open(os.path.join(folder, METADATA_FILE), 'w') as f:
      json.dump(metadata, f, indent=2, sort_keys=True)
  _write_folder(out_dir, save)
  return out_dir


# What an export writes into its folder: TensorFlow's SavedModel and the metadata file.
EXPORT_ENTRIES = frozenset({'saved_model.pb', 'variables', 'assets', 'fingerprint.pb',
                            METADATA_FILE})


def _check_out_dir(out_dir: str) -> None:
  """An earlier export in out_dir is replaced, so out_dir must hold nothing else."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f'{out_dir} is a file; give a folder for the SavedModel')
  other = sorted(n for n in (os.listdir(out_dir) if os.path.isdir(out_dir) else ())
                 if n not in EXPORT_ENTRIES and not n.startswith(stopping.PARTIAL_PREFIX))
  if other:
    raise ValueError(f'{out_dir} holds {", ".join(other[:3])}{" ..." if len(other) > 3 else ""}'
                     ', not written by p2p_jax.export (an earlier export there is replaced); '
                     'give a new or an empty folder, or one holding only an export')


def _write_folder(out_dir: str, save) -> None:
  """save(folder) into a hidden folder inside out_dir, then its entries moved into out_dir in
  place of an earlier export's: a failed or stopped export leaves no half-written
  SavedModel, and an earlier one as it was. Inside out_dir, so the moves are renames on one
  file system whatever out_dir is (a symlink, a mount point)."""
  _check_out_dir(out_dir)
  new = stopping.partial_folder(out_dir)
  # Gone at the end, and on a stop request; so are the folders made for out_dir after a
  # failure or a stop.
  with stopping.temporary(new, made=stopping.missing_folders(out_dir)):
    os.makedirs(new)
    save(new)
    with stopping.writing(completes=True):  # a stop request waits for the moves
      for name in EXPORT_ENTRIES & set(os.listdir(out_dir)):
        old = os.path.join(out_dir, name)
        if os.path.isdir(old) and not os.path.islink(old):
          shutil.rmtree(old)
        else:
          os.remove(old)
      for name in os.listdir(new):
        os.rename(os.path.join(new, name), os.path.join(out_dir, name))


def define_flags(fv) -> None:
  cli.define_generator_flags(fv, mode_default='eval', sampling=False)
  flags.DEFINE_string('out_dir', None, 'where the SavedModel goes; default: '
                      'WORKDIR/saved_model_<mode>', flag_values=fv)
  flags.DEFINE_integer('image_size', None, 'fix height = width to this; default: any '
                       'multiple of 2**depth', lower_bound=1, flag_values=fv)
  flags.DEFINE_list('platforms', list(DEFAULT_PLATFORMS), 'platforms the SavedModel runs '
                    'on: cpu, cuda, rocm, tpu', flag_values=fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, 'p2p_jax.export', __doc__)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def run():
    workdir = cli.workdir_of(args)
    config = workdirs.load_config(workdir)
    method = methods.get(config)
    method.check_direction(args.direction)
    step, variables = workdirs.load_generator_variables(
        workdir, cli.checkpoint_choice(args.checkpoint))
    workdirs.check_generator_trained(workdir, step, args.direction)
    variables = method.generator_variables(variables, args.direction)
    suffix = '' if method.directions == ('AtoB',) else f'_{args.direction}'
    out_dir = args.out_dir or os.path.join(workdir, f'saved_model_{args.mode}{suffix}')
    export_saved_model(config, variables, out_dir, args.mode, args.image_size, step=step,
                       platforms=tuple(args.platforms), direction=args.direction)
    print(f'SavedModel ({args.mode} mode, checkpoint step {step}) written to {out_dir}')
    return 0
  return cli.run('p2p_jax.export', run)


if __name__ == '__main__':
  sys.exit(main())
