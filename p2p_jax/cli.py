"""What the command-line tools that read a trained model share: flags and errors.

`evaluate`, `translate` and `export` (and `main`, through absl's app) use absl flags:
`--name=value` or `--name value`, every flag with its help text and default in `--help`.
Each tool defines its flags on its own FlagValues (not absl's global FLAGS), so the tools
can be imported and called from one Python process (tests, notebooks) without clashing.
Errors the user can fix (a missing workdir, a bad checkpoint name, an unreadable image)
end the tool with one line on stderr and exit status 2, never a stack trace.
"""

import errno
import sys
from typing import Callable

from absl import flags

from p2p_jax import compile_cache, inference, input_pipeline, methods, train_logging, workdirs
from p2p_jax.pytorch import pretrained

USAGE_ERROR = 2


class UsageError(ValueError):
  """A flag value that cannot be used; the message names the flag."""


def checkpoint_choice(value: str):
  """--checkpoint's value: 'latest', 'best' or a step number (int)."""
  if value in ('latest', 'best'):
    return value
  if value.isdigit():
    return int(value)
  raise UsageError(f"--checkpoint must be 'latest', 'best' or a step number, got {value!r}")


def define_generator_flags(fv: flags.FlagValues, *, mode_default: str | None = None,
                           sampling: bool = True) -> None:
  """--workdir or --pretrained (+ --pretrained_dir), --checkpoint, --mode and, for tools
  that run the generator (`sampling`), --bn_scope, --seed and --compilation_cache."""
  define_model_flags(fv)
  flags.DEFINE_enum('direction', 'AtoB', methods.DIRECTIONS,
                    "which generator: 'AtoB' (the trained input -> target map; pix2pix has "
                    "only this one) or 'BtoA' (CycleGAN's G_B, target domain -> input "
                    'domain)', flag_values=fv)
  flags.DEFINE_string('checkpoint', 'latest', "which checkpoint: 'latest', 'best' (lowest "
                      'validation L1) or a step number', flag_values=fv)
  flags.DEFINE_enum('mode', mode_default, inference.MODES,
                    "'paper' (dropout on, BatchNorm with test statistics, as the paper) or "
                    "'eval' (running averages, no dropout)"
                    + ("; default: the config's inference_mode" if mode_default is None
                       else ''), flag_values=fv)
  if sampling:
    define_compilation_cache_flag(fv)
    flags.DEFINE_enum('bn_scope', 'image', inference.BN_SCOPES,
                      "paper mode: BatchNorm statistics of each 'image' (as the reference's "
                      "batch-1 test) or of the whole 'batch'", flag_values=fv)
    flags.DEFINE_integer('seed', 0, 'seed of the dropout keys (paper mode): image i of a run '
                         'uses fold_in(PRNGKey(seed), i); for translate, also of the features '
                         "a pix2pixHD model with the feature encoder draws from its clusters",
                         flag_values=fv)


def define_compilation_cache_flag(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('compilation_cache', '', "folder of JAX's persistent compilation "
                      "cache (compiled programs reused by the next start); '' for the "
                      "default (~/.cache/p2p_jax), 'none' to turn it off", flag_values=fv)


def define_model_flags(fv: flags.FlagValues) -> None:
  """--workdir or --pretrained (exactly one), and --pretrained_dir."""
  flags.DEFINE_string('workdir', None, 'workdir the model was trained into '
                      '(python -m p2p_jax.main --workdir=...) or converted into '
                      '(python -m p2p_jax.convert)', flag_values=fv)
  define_pretrained_flag(fv, "instead of --workdir: a generator the PyTorch reference "
                         'publishes, converted once into --pretrained_dir (downloaded there '
                         'on first use)')
  flags.DEFINE_string('pretrained_dir', None, 'cache folder of --pretrained: <name>.pth and '
                      f'the converted <name>/ workdir; default: {pretrained.default_dir()} '
                      '($XDG_CACHE_HOME/p2p_jax/pretrained)', flag_values=fv)
  flags.register_multi_flags_validator(
      ['workdir', 'pretrained'], lambda v: bool(v['workdir']) != bool(v['pretrained']),
      message='give --workdir=DIR or --pretrained=NAME (exactly one of them)', flag_values=fv)


def define_pretrained_flag(fv: flags.FlagValues, help_text: str) -> None:
  """--pretrained=NAME: `method.name` (pix2pix.sat2map, cyclegan.horse2zebra) or a name
  only one method publishes; checked when parsed (pretrained.resolve's one line)."""
  flags.DEFINE_string('pretrained', None, f'{help_text}: {", ".join(pretrained.NAMES)}',
                      flag_values=fv)

  def known(name):
    if name is not None:
      try:
        pretrained.resolve(name)
      except pretrained.PretrainedError as e:
        raise flags.ValidationError(str(e)) from None
    return True
  flags.register_validator('pretrained', known, flag_values=fv)


def workdir_of(args) -> str:
  """--workdir, or the workdir of --pretrained (fetched and converted on first use)."""
  if args.pretrained:
    return pretrained.workdir_for(args.pretrained, args.pretrained_dir)
  return args.workdir


def load_generator(args, workdir: str | None = None, *,
                   for_files: bool = False) -> inference.TrainedGenerator:
  """The generator the generator flags name (from `workdir` if already resolved), with
  the compilation cache on as --compilation_cache says; for_files: to translate a user's
  files (workdirs.load_generator)."""
  compile_cache.enable(args.compilation_cache)
  kwargs = {'bn_scope': args.bn_scope} if 'bn_scope' in args else {}
  generator = workdirs.load_generator(workdir or workdir_of(args),
                                      checkpoint_choice(args.checkpoint), args.mode,
                                      direction=args.direction, for_files=for_files,
                                      seed=args.seed if 'seed' in args else 0, **kwargs)
  if args.pretrained and 'bn_scope' in args:
    print(f'p2p_jax: {args.pretrained} loaded; compiling it for the first batch of each image '
          'size (once: later runs load the compiled program from the cache)', flush=True)
  return generator


def split_batches(config, split: str, batch_size: int, seed: int = 0):
  """The batches of a dataset split as a one-process command reads it: in order, no
  augmentation, in the form the config's method trains on (evaluate, encode_features)."""
  method = methods.get(config)
  return input_pipeline.numpy_batches(
      config.data, split, batch_size=batch_size, train=False, seed=seed, process_index=0,
      process_count=1, in_channels=config.model.in_channels,
      out_channels=config.model.out_channels, data_kind=method.data_kind_for(config),
      **method.pipeline_options(config))


def parse(argv: list[str], define: Callable[[flags.FlagValues], None], prog: str,
          doc: str) -> flags.FlagValues:
  """Parsed flags of one tool; --help prints `doc` and the flags, and exits 0."""
  fv = flags.FlagValues()
  define(fv)
  if any(a in ('-h', '--help', '--helpshort', '--helpfull', '-?') for a in argv):
    print(f'{doc.strip()}\n\nFlags of python -m {prog}:\n'
          f'{fv.get_help(include_special_flags=False)}')
    raise SystemExit(0)
  train_logging.quiet_console()
  try:
    rest = fv([prog, *argv])
  except flags.Error as e:
    print(f'{prog}: error: {e} (python -m {prog} --help lists the flags)', file=sys.stderr)
    raise SystemExit(USAGE_ERROR) from None
  if len(rest) > 1:
    print(f'{prog}: error: unexpected arguments {rest[1:]} (flags are --name=value)',
          file=sys.stderr)
    raise SystemExit(USAGE_ERROR)
  return fv


# A full disk or quota, a read-only file system: the user frees space or picks another place.
_STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def run(prog: str, fn: Callable[[], int]) -> int:
  """fn()'s exit status; an error the user can fix becomes one line and status 2."""
  try:
    return fn()
  except (ValueError, FileNotFoundError, PermissionError, ImportError) as e:
    print(f'{prog}: error: {e}', file=sys.stderr)
    return USAGE_ERROR
  except OSError as e:
    if e.errno not in _STORAGE_FULL:
      raise
    # Every command's outputs are written under temporary names and renamed when whole.
    where = f'{e.filename}: ' if e.filename else ''
    print(f'{prog}: error: {where}{e.strerror or e}; nothing half-written is left, what it '
          'wrote before is as it was', file=sys.stderr)
    return USAGE_ERROR
