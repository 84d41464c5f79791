"""Command line: python -m p2p_jax.main --config=configs/<name>.py --workdir=DIR.

Override any field with --config.<field>=<value>, e.g. --config.batch_size=4
--config.loss.recon_weight=10. Everything else lives in train.py, so notebooks call
`p2p_jax.train.train_and_evaluate(config, workdir)` directly.
"""

if __name__ == '__main__':
  # First, before jax exists in this process: the command may re-execute itself once with
  # glibc's huge-page malloc tunable (10-25% faster CPU training; see host_memory.py).
  from p2p_jax import host_memory
  host_memory.reexec_with_hugepage_malloc()

import logging  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, samples and logs.')
config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                lock_config=True)
flags.DEFINE_string('compilation_cache', '', "Folder of JAX's persistent compilation cache "
                    "(compiled programs reused by the next start); '' for the default "
                    "(~/.cache/p2p_jax), 'none' to turn it off.")
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv):
  """absl's parser, plus a one-line error for --config.<key> overrides of missing keys and
  exit status 0 for --help."""
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as e:
    # absl ends --help with status 1; asking for help is not an error.
    if e.code == 1 and any(a in ('-h', '--help', '--helpshort', '--helpfull', '-?')
                           for a in argv[1:]):
      raise SystemExit(0) from None
    raise
  except (AttributeError, KeyError) as e:
    # ml_collections raises these from inside flag parsing (a trace, not a flags error).
    from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
    lines = str(e.args[0] if e.args else e).split('\n')
    key = lines[0].strip('"\'')  # the missing key; a 'Did you mean' line may follow
    culprits = [a.split('=')[0] for a in argv[1:]
                if a.startswith('--config.') and key in a.split('=')[0].split('.')]
    renamed = [config_schema.describe_unknown(c[len('--config.'):]) for c in culprits
               if c[len('--config.'):] in config_schema.RENAMED]
    sys.exit(' '.join([f'p2p_jax: bad config override {", ".join(culprits) or "--config"}: '
                       f'the config has no key {key!r}.', *lines[1:],
                       *(f'Renamed: {r}.' for r in renamed),
                       '(The fields are those of p2p_jax/config_schema.py.)']))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.getLogger().setLevel(logging.INFO)
  from p2p_jax import compile_cache, train, train_logging  # pylint: disable=g-import-not-at-top
  # Orbax and TFDS (absl's logger) and JAX log at INFO: dozens of lines per checkpoint
  # would bury the progress line. --verbosity=0 (or higher) shows everything.
  train_logging.quiet_console(verbose=FLAGS['verbosity'].present)
  compile_cache.enable(FLAGS.compilation_cache)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, FloatingPointError, PermissionError) as e:
    # Our errors name the file or field and what was expected: no stack trace needed.
    sys.exit(f'p2p_jax: {type(e).__name__}: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
