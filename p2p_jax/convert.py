r"""Converts pix2pix weights between the PyTorch reference and p2p_jax workdirs.

  # A reference G (latest_net_G.pth), optionally with its D, into a new p2p_jax workdir:
  python -m p2p_jax.convert --from_pytorch=latest_net_G.pth [--from_pytorch_d=latest_net_D.pth] \
      --workdir=/tmp/p2p_imported [--config=configs/facades.py] [--direction=BtoA]
  # A p2p_jax checkpoint to .pth files the reference's networks load (strict=True):
  python -m p2p_jax.convert --workdir=/tmp/p2p_facades --to_pytorch=net_G.pth \
      [--to_pytorch_d=net_D.pth] [--checkpoint=latest|best|STEP] [--overwrite]
  # One of the reference's published generators, by name, into a workdir:
  python -m p2p_jax.convert --pretrained=facades_label2photo [--workdir=DIR]
  # pix2pixHD's published label2city_1024p generator (a LocalEnhancer; its --config says
  # the labels: 35 + instance edges), and a pix2pixHD workdir back to the official layout:
  python -m p2p_jax.convert --from_pytorch=label2city_1024p/latest_net_G.pth \
      --config=configs/pix2pixhd_cityscapes_1024p.py --workdir=/tmp/label2city_1024p
  python -m p2p_jax.convert --workdir=/tmp/label2city_1024p --to_pytorch=latest_net_G.pth

Import writes config.json (the schema's defaults, or --config's fields, with the `model`
block the tensors imply and dropout_placement='pytorch') and an Orbax checkpoint at step 0
of a full training state (fresh Adam; D initialised from the seed when not given), so
`translate`, `evaluate`, `export` and `python -m p2p_jax.main` (fine-tuning from step 0)
use the workdir as if p2p_jax had trained it. The architecture (U-Net depth, ngf,
channels, norm; PatchGAN n_layers, ndf, or the PixelGAN) comes from the tensors; keys may
carry DataParallel's `module.` prefix and may lack `num_batches_tracked`. A file that does
not fit (another architecture, a truncated or non-PyTorch file, a tensor of the wrong
shape) ends with one line naming the file and the first key that does not fit, and exit
status 2, with nothing written; so does a workdir that already holds checkpoints or the
config of another model. Export never replaces an existing file without --overwrite.

PyTorch is needed to read and write .pth files (the CPU build is enough:
pip install torch --index-url https://download.pytorch.org/whl/cpu).
"""

import sys

from absl import flags

from p2p_jax import cli, config_schema, input_pipeline, workdirs
from p2p_jax.models import layers
from p2p_jax.pytorch import (files, pix2pixhd_weights, pix2pixhd_workdir, pretrained,
                             workdir as workdir_lib)

_IMPORT_ONLY = ('config', 'direction', 'norm', 'seed')
_EXPORT_ONLY = ('checkpoint', 'overwrite')


def define_flags(fv) -> None:
  flags.DEFINE_string('from_pytorch', None, "import: the reference's generator state_dict "
                      '(.pth, e.g. latest_net_G.pth)', flag_values=fv)
  flags.DEFINE_string('from_pytorch_d', None, "import: the reference's discriminator "
                      'state_dict (e.g. latest_net_D.pth); default: D initialised from the '
                      'seed', flag_values=fv)
  flags.DEFINE_string('to_pytorch', None, "export: the .pth file for the workdir's generator",
                      flag_values=fv)
  flags.DEFINE_string('to_pytorch_d', None, "export: a .pth file for the workdir's "
                      'discriminator as well', flag_values=fv)
  flags.DEFINE_enum('pretrained', None, list(pretrained.MODELS), 'import a generator the '
                    'reference publishes, by name (downloaded into --pretrained_dir on first '
                    'use); into --workdir if given, else into <pretrained_dir>/<name>/',
                    flag_values=fv)
  flags.DEFINE_string('pretrained_dir', None, 'cache folder of --pretrained; default: '
                      f'{pretrained.default_dir()} ($XDG_CACHE_HOME/p2p_jax/pretrained)',
                      flag_values=fv)
  flags.DEFINE_string('workdir', None, 'import: the workdir to create (it must hold no '
                      'checkpoints); export: the workdir to read', flag_values=fv)
  flags.DEFINE_string('config', None, 'import: a config file (e.g. configs/facades.py) for '
                      "the fields the weights do not fix (data, optim, ...); default: the "
                      "schema's defaults", flag_values=fv)
  flags.DEFINE_enum('direction', None, input_pipeline.DIRECTIONS, 'import: '
                    "config.data.direction the model translates; default: the config's",
                    flag_values=fv)
  flags.DEFINE_enum('norm', None, layers.NORMS, 'import: the normalisation, when the tensors '
                    "cannot tell (biases but no norm tensors: 'instance', the default, or "
                    "p2p_jax's 'none'); default: inferred", flag_values=fv)
  flags.DEFINE_integer('seed', None, "import: config.seed (D's init when no D is given, and "
                       "the dropout stream); default: the config's", flag_values=fv)
  flags.DEFINE_string('checkpoint', 'latest', "export: 'latest', 'best' (lowest validation "
                      'L1) or a step number', flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'export: replace existing .pth files', flag_values=fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, 'p2p_jax.convert', __doc__)


# Each mode's flag, and the flags that belong to other modes only.
_MODE_FLAG = {'import': 'from_pytorch', 'export': 'to_pytorch', 'pretrained': 'pretrained'}
_NOT_WITH = {'import': _EXPORT_ONLY + ('to_pytorch_d', 'pretrained_dir'),
             'export': _IMPORT_ONLY + ('from_pytorch_d', 'pretrained_dir'),
             'pretrained': _IMPORT_ONLY + _EXPORT_ONLY + ('from_pytorch_d', 'to_pytorch_d')}


def _mode(args) -> str:
  """'import', 'export' or 'pretrained'; raises cli.UsageError naming the flags that do
  not go together."""
  modes = [mode for mode, flag in _MODE_FLAG.items() if args[flag].value]
  if len(modes) != 1:
    raise cli.UsageError('give exactly one of --from_pytorch (import), --to_pytorch (export) '
                         'and --pretrained')
  mode, flag = modes[0], _MODE_FLAG[modes[0]]
  misplaced = [f'--{n}' for n in _NOT_WITH[mode] if args[n].present]
  if misplaced:
    raise cli.UsageError(f'{", ".join(misplaced)} cannot be used with --{flag}')
  if mode != 'pretrained' and not args.workdir:
    raise cli.UsageError(f'--{flag} needs --workdir')
  return mode


def _describe(arch: dict, g_params: int) -> str:
  return (f"{arch['generator']} G (ngf {arch['ngf']}, {arch['in_channels']} -> "
          f"{arch['out_channels']} channels, {arch['norm']} norm, {g_params:,} params)")


def run_import(args) -> dict:
  """--from_pytorch[_d] into --workdir; returns import_files' summary. pix2pixHD's files
  (a --config of method pix2pixhd, or a LocalEnhancer's keys) go to its own converter."""
  config = config_schema.load_file(args.config) if args.config else None
  g_sd = files.read_pth(args.from_pytorch)
  d_sd = files.read_pth(args.from_pytorch_d) if args.from_pytorch_d else None
  if (config is not None and config.method == 'pix2pixhd') or (
      pix2pixhd_weights.is_local_enhancer(g_sd)):
    return pix2pixhd_workdir.import_weights(
        g_sd, args.workdir, d_state_dict=d_sd, config=config, seed=args.seed,
        g_source=args.from_pytorch, d_source=args.from_pytorch_d)
  config = config_schema.get_config() if config is None else config
  if args.direction:
    config.data.direction = args.direction
  return workdir_lib.import_weights(g_sd, args.workdir, d_state_dict=d_sd, config=config,
                                    norm=args.norm, seed=args.seed,
                                    g_source=args.from_pytorch, d_source=args.from_pytorch_d)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def run():
    mode = _mode(args)
    if mode == 'export':
      hd = workdirs.load_config(args.workdir).method == 'pix2pixhd'
      export = pix2pixhd_workdir.export_files if hd else workdir_lib.export_files
      step = export(args.workdir, args.to_pytorch, d_path=args.to_pytorch_d,
                    which=cli.checkpoint_choice(args.checkpoint), overwrite=args.overwrite)
      d = f' and D to {args.to_pytorch_d}' if args.to_pytorch_d else ''
      print(f'wrote G of {args.workdir} (checkpoint step {step}) to {args.to_pytorch}{d}')
      return 0
    if mode == 'pretrained':
      if args.workdir:
        path = pretrained.fetch(args.pretrained, args.pretrained_dir)
        pretrained.convert_into(args.pretrained, path, args.workdir)
        workdir = args.workdir
      else:
        workdir = pretrained.workdir_for(args.pretrained, args.pretrained_dir)
      model = pretrained.MODELS[args.pretrained]
      print(f'{args.pretrained} ({model.task}; {model.dataset}, {model.direction}) is the '
            f'p2p_jax workdir {workdir}; D initialised from the seed (none is published)')
      return 0
    summary = run_import(args)
    d = ('D converted from ' + args.from_pytorch_d if summary['d_converted'] else
         f'D initialised from seed {summary["config"].seed} (no --from_pytorch_d)')
    print(f'converted {_describe(summary["arch"], summary["g_params"])} from '
          f'{args.from_pytorch} into {args.workdir} (config.json + checkpoint step 0); {d}')
    return 0
  return cli.run('p2p_jax.convert', run)


if __name__ == '__main__':
  sys.exit(main())
