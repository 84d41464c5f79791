"""Command line: python -m p2p_jax.main --config=configs/<name>.py --workdir=DIR.

Override any field with --config.<field>=<value>, e.g. --config.batch_size=4
--config.loss.recon_weight=10. Everything else lives in train.py, so notebooks call
`p2p_jax.train.train_and_evaluate(config, workdir)` directly.

Exit status: 0 when the run reached its last step or Ctrl-C stopped it (a checkpoint of the
step it had reached is written); 75 when SIGTERM (a preemption, a scheduler) stopped it
the same way, or at once before the first step, so that it is restarted and resumes
(p2p_jax/stopping.py); 1 for an error, in one line when it is the user's to fix (a save
that failed included); 130 after a second Ctrl-C (stopped at once).
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command with one line and exit status 75
  # (SIGTERM) before the trainer's own handling takes over (stopping.py).
  from p2p_jax import stopping
  stopping.stop_early()
  # Before jax exists in this process: the command may re-execute itself once with glibc's
  # huge-page malloc tunable (10-25% faster CPU training; see host_memory.py), holding the
  # stop signals through it.
  from p2p_jax import host_memory
  host_memory.reexec_with_hugepage_malloc(hold_signals=True)

import difflib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
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

_SCHEMA_HINT = '(the fields are those of p2p_jax/config_schema.py)'


def _command_line_error(argv) -> str | None:
  """One line for a --config file that does not exist, or an override of a field the
  schema does not have (naming the flag and the closest field); None if neither."""
  args = argv[1:]
  for i, arg in enumerate(args):
    path = arg[len('--config='):] if arg.startswith('--config=') else (
        args[i + 1] if arg == '--config' and i + 1 < len(args) else None)
    file = path.split(':', 1)[0] if path else None  # config_flags allows PATH:ARGUMENT
    file = os.path.abspath(os.path.expanduser(file)) if file else None
    if file and not os.path.isfile(file):
      return f'p2p_jax: config file {file} not found (--config)'
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel (imports jax)
  fields = config_schema.flatten(config_schema.get_config())
  for arg in args:
    prefix = next((p for p in ('--config.', '--noconfig.') if arg.startswith(p)), None)
    if prefix is None:
      continue
    flag = arg.split('=', 1)[0]
    field = flag[len(prefix):]
    if field in fields:
      continue
    if field in config_schema.RENAMED:
      return (f'p2p_jax: bad config override {flag}: renamed: '
              f'{config_schema.describe_unknown(field)}; use --config.'
              f'{config_schema.RENAMED[field]} {_SCHEMA_HINT}')
    close = difflib.get_close_matches(field, list(fields), n=1)
    hint = f'; did you mean --config.{close[0]}?' if close else ''
    return (f'p2p_jax: bad config override {flag}: the config has no field '
            f'{field!r}{hint} {_SCHEMA_HINT}')
  return None


def _parse_flags(argv):
  """absl's parser, with one-line errors for a missing --config file and --config.<key>
  overrides of missing keys (ml_collections would raise them as traces), and exit status 0
  for --help."""
  error = _command_line_error(argv)
  if error:
    sys.exit(error)
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as e:
    # absl ends --help with status 1; asking for help is not an error.
    if e.code == 1 and any(a in ('-h', '--help', '--helpshort', '--helpfull', '-?')
                           for a in argv[1:]):
      raise SystemExit(0) from None
    raise
  except (AttributeError, KeyError) as e:
    # Anything the check above did not foresee: still one line.
    message = str(e.args[0] if e.args else e).splitlines()[0]
    sys.exit(f'p2p_jax: bad config override: {message} {_SCHEMA_HINT}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.getLogger().setLevel(logging.INFO)
  # pylint: disable=g-import-not-at-top (after flag parsing)
  from p2p_jax import compile_cache, stopping, train, train_logging
  # Orbax and TFDS (absl's logger) and JAX log at INFO: dozens of lines per checkpoint
  # would bury the progress line. --verbosity=0 (or higher) shows everything.
  train_logging.quiet_console(verbose=FLAGS['verbosity'].present)
  compile_cache.enable(FLAGS.compilation_cache)
  try:
    outcome = train.run_training(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, FloatingPointError, PermissionError,
          stopping.OtherProcessError) as e:
    # Our errors name the file or field and what was expected: no stack trace needed.
    sys.exit(f'p2p_jax: {type(e).__name__}: {e}')
  except KeyboardInterrupt:
    # A second Ctrl-C: exit now, without waiting for threads (a save in progress stays
    # unfinished; the next run removes its folder and resumes from the one before).
    print('p2p_jax: interrupted by a second Ctrl-C; stopped at once without saving',
          file=sys.stderr, flush=True)
    os._exit(130)  # pylint: disable=protected-access
  # 0: done or stopped by Ctrl-C; 75: stopped by SIGTERM, to be restarted (stopping.py).
  sys.exit(stopping.exit_code(outcome.stopped_by))


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
