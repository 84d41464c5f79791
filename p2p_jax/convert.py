r"""Converts weights between the PyTorch reference (pix2pix and CycleGAN) and p2p_jax workdirs.

  # A reference training folder (checkpoints/<experiment>/: CycleGAN's latest_net_G_A.pth,
  # G_B, D_A, D_B, or pix2pix's latest_net_G.pth and D) into a new p2p_jax workdir:
  python -m p2p_jax.convert --from_pytorch=checkpoints/horse2zebra --workdir=/tmp/h2z \
      [--config=configs/cyclegan.py] [--pytorch_epoch=latest]
  # Or its files one by one: a G (pix2pix's, or CycleGAN's G_A), optionally its D (D_A),
  # and for CycleGAN G_B and D_B:
  python -m p2p_jax.convert --from_pytorch=latest_net_G.pth [--from_pytorch_d=latest_net_D.pth] \
      --workdir=/tmp/p2p_imported [--config=configs/facades.py] [--direction=BtoA]
  python -m p2p_jax.convert --from_pytorch=latest_net_G_A.pth --from_pytorch_g_b=latest_net_G_B.pth \
      --from_pytorch_d=latest_net_D_A.pth --from_pytorch_d_b=latest_net_D_B.pth --workdir=/tmp/cg
  # A p2p_jax checkpoint to .pth files the reference's networks load (strict=True): a folder
  # gets every network as the reference names them, a .pth file the generator (G_A) only:
  python -m p2p_jax.convert --workdir=/tmp/h2z --to_pytorch=/tmp/h2z_torch [--checkpoint=best]
  python -m p2p_jax.convert --workdir=/tmp/p2p_facades --to_pytorch=net_G.pth \
      [--to_pytorch_d=net_D.pth] [--to_pytorch_g_b=...] [--to_pytorch_d_b=...] [--overwrite]
  # One of the reference's published generators, by name, into a workdir:
  python -m p2p_jax.convert --pretrained=cyclegan.horse2zebra [--workdir=DIR]
  python -m p2p_jax.convert --pretrained=pix2pix.facades_label2photo [--workdir=DIR]
  # pix2pixHD's published label2city_1024p generator (a LocalEnhancer; its --config says
  # the labels: 35 + instance edges), and a pix2pixHD workdir back to the official layout:
  python -m p2p_jax.convert --from_pytorch=label2city_1024p/latest_net_G.pth \
      --config=configs/pix2pixhd_cityscapes_1024p.py --workdir=/tmp/label2city_1024p
  python -m p2p_jax.convert --workdir=/tmp/label2city_1024p --to_pytorch=latest_net_G.pth
  # A pix2pixHD run trained with the feature encoder (--instance_feat: its folder also holds
  # latest_net_E.pth, netE), and back (a folder gets latest_net_E.pth too):
  python -m p2p_jax.convert --from_pytorch=checkpoints/label2city_feat \
      --config=configs/pix2pixhd_cityscapes_1024p.py --workdir=/tmp/label2city_feat
  python -m p2p_jax.convert --from_pytorch=latest_net_G.pth --from_pytorch_e=latest_net_E.pth \
      [--from_pytorch_d=latest_net_D.pth] --config=... --workdir=/tmp/label2city_feat
  python -m p2p_jax.convert --workdir=/tmp/label2city_feat --to_pytorch=/tmp/feat_torch

Which method: pix2pixHD when G is the official LocalEnhancer, an E (pix2pixHD's feature
encoder) is given or --config is a pix2pixhd one; CycleGAN when the files include a G_B or
D_B or the G is a ResnetGenerator; pix2pix otherwise; a --config of another method is refused, and --method says it outright (the reference also trains pix2pix with ResNets and CycleGAN with U-Nets).

Import writes config.json (the method's reference defaults, or --config's fields, with the
`model` block the tensors imply), an Orbax checkpoint at step 0 of a full training state
(fresh Adam; networks not given initialised from the seed; CycleGAN's image pools empty)
and pytorch_import.json (which network came from which file), so `translate`, `evaluate`,
`export` and `python -m p2p_jax.main` (fine-tuning from step 0) use the workdir as if
p2p_jax had trained it. The architecture (U-Net depth or ResNet blocks, ngf, channels,
norm, a ResNet's dropout; PatchGAN n_layers, ndf, or the PixelGAN) comes from the tensors;
keys may carry DataParallel's `module.` prefix and may lack `num_batches_tracked`; old
files' instance-norm statistics are dropped, as the reference drops them. A file that
does not fit (another architecture, a discriminator given as a generator, a truncated or
non-PyTorch file, a tensor of the wrong shape) ends with one line naming the file and the
first key that does not fit, and exit status 2, with nothing written; so does a workdir
that already holds checkpoints or the config of another model. Export never replaces an
existing file without --overwrite, and refuses a generator that was never trained nor
converted (a published CycleGAN's G_B at step 0).

PyTorch is needed to read and write .pth files (the CPU build is enough:
pip install torch --index-url https://download.pytorch.org/whl/cpu).
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command at once with one line (a
  # KeyboardInterrupt raised during the imports can be lost in a garbage-collection
  # callback, and the command go on), a workdir or .pth file being made removed
  # (stopping.py).
  from p2p_jax import stopping as _stopping  # pylint: disable=g-import-not-at-top
  _stopping.stop_at_once('p2p_jax.convert', 'nothing half-made is left: a new workdir or '
                         '.pth file appears only whole, an existing .pth file is as it was')
  # Before JAX and the rest are imported: an offline first use of --pretrained=NAME
  # fails in a second (pytorch/pretrained.py).
  import sys  # pylint: disable=g-import-not-at-top
  from p2p_jax.pytorch import pretrained as _pretrained  # pylint: disable=g-import-not-at-top
  _pretrained.exit_if_unreachable(sys.argv[1:], 'p2p_jax.convert')

import os
import sys

from absl import flags

from p2p_jax import cli, config_schema, input_pipeline, methods
from p2p_jax.models import layers
from p2p_jax.pytorch import pretrained, runs

# --from_pytorch_<x> / --to_pytorch_<x>
_ROLE_FLAGS = {'d': 'D', 'g_b': 'G_B', 'd_b': 'D_B', 'e': 'E'}
_IMPORT_ONLY = ('config', 'direction', 'norm', 'seed', 'method') + tuple(
    f'from_pytorch_{x}' for x in _ROLE_FLAGS)
_EXPORT_ONLY = ('checkpoint', 'overwrite') + tuple(f'to_pytorch_{x}' for x in _ROLE_FLAGS)


def define_flags(fv) -> None:
  flags.DEFINE_string('from_pytorch', None, "import: the reference's generator (.pth: "
                      "pix2pix's latest_net_G.pth or CycleGAN's latest_net_G_A.pth), or its "
                      'checkpoint folder (every network found there by its file name)',
                      flag_values=fv)
  flags.DEFINE_string('from_pytorch_d', None, "import: the reference's discriminator "
                      "(pix2pix's latest_net_D.pth, CycleGAN's latest_net_D_A.pth); default: "
                      'D initialised from the seed', flag_values=fv)
  flags.DEFINE_string('from_pytorch_g_b', None, "import: CycleGAN's G_B (B -> A, "
                      "latest_net_G_B.pth); default: initialised from the seed, and BtoA "
                      'refused until trained', flag_values=fv)
  flags.DEFINE_string('from_pytorch_d_b', None, "import: CycleGAN's D_B (latest_net_D_B.pth); "
                      'default: initialised from the seed', flag_values=fv)
  flags.DEFINE_string('from_pytorch_e', None, "import: pix2pixHD's feature encoder netE "
                      '(latest_net_E.pth, trained with --instance_feat / --label_feat); '
                      'needed when G takes its features', flag_values=fv)
  flags.DEFINE_string('to_pytorch', None, 'export: a .pth file for the generator (CycleGAN: '
                      'G_A), or a folder (any path not ending in .pth) that receives every '
                      'network as the reference names them (<epoch>_net_G_A.pth, ...)',
                      flag_values=fv)
  for x, role in _ROLE_FLAGS.items():
    what = {'D': 'D (CycleGAN: D_A)', 'E': "pix2pixHD feature encoder E"}.get(role, role)
    flags.DEFINE_string(f'to_pytorch_{x}', None, f"export: a .pth file for the workdir's "
                        f'{what} as well', flag_values=fv)
  flags.DEFINE_string('pytorch_epoch', 'latest', 'folders of --from_pytorch / --to_pytorch: '
                      "the files' <epoch> prefix (<epoch>_net_G.pth), as the reference's "
                      '--epoch', flag_values=fv)
  flags.DEFINE_enum('method', None, list(methods.METHODS), "import: the files' method; "
                    "default: CycleGAN if a G_B / D_B is given or G is a ResnetGenerator, "
                    'else pix2pix', flag_values=fv)
  cli.define_pretrained_flag(fv, 'import a generator the reference publishes, by name '
                             '(downloaded into --pretrained_dir on first use); into '
                             '--workdir if given, else into the cache')
  flags.DEFINE_string('pretrained_dir', None, 'cache folder of --pretrained; default: '
                      f'{pretrained.default_dir()} ($XDG_CACHE_HOME/p2p_jax/pretrained)',
                      flag_values=fv)
  flags.DEFINE_string('workdir', None, 'import: the workdir to create (it must hold no '
                      'checkpoints); export: the workdir to read', flag_values=fv)
  flags.DEFINE_string('config', None, 'import: a config file (e.g. configs/facades.py) for '
                      "the fields the weights do not fix (data, optim, ...); default: the "
                      "method's reference defaults", flag_values=fv)
  flags.DEFINE_enum('direction', None, input_pipeline.DIRECTIONS, 'import: '
                    "config.data.direction the model translates; default: the config's",
                    flag_values=fv)
  flags.DEFINE_enum('norm', None, layers.NORMS, 'import: the normalisation, when the tensors '
                    "cannot tell (biases but no norm tensors: 'instance', the default, or "
                    "p2p_jax's 'none'); default: inferred", flag_values=fv)
  flags.DEFINE_integer('seed', None, "import: config.seed (the init of networks not given, "
                       "and the step's randomness); default: the config's", flag_values=fv)
  flags.DEFINE_string('checkpoint', 'latest', "export: 'latest', 'best' (lowest validation "
                      'L1) or a step number', flag_values=fv)
  flags.DEFINE_bool('overwrite', False, 'export: replace existing .pth files', flag_values=fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, 'p2p_jax.convert', __doc__)


# Each mode's flag, and the flags that belong to other modes only.
_MODE_FLAG = {'import': 'from_pytorch', 'export': 'to_pytorch', 'pretrained': 'pretrained'}
_NOT_WITH = {'import': _EXPORT_ONLY + ('pretrained_dir',),
             'export': _IMPORT_ONLY + ('pretrained_dir',),
             'pretrained': _IMPORT_ONLY + _EXPORT_ONLY + ('pytorch_epoch',)}


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
  if mode != 'pretrained':
    prefix = 'from_pytorch' if mode == 'import' else 'to_pytorch'
    folder = (os.path.isdir(args[prefix].value) if mode == 'import'
              else not args[prefix].value.endswith('.pth'))
    others = [f'--{prefix}_{x}' for x in _ROLE_FLAGS if args[f'{prefix}_{x}'].value]
    if folder and others:
      raise cli.UsageError(f'--{prefix}={args[prefix].value} is a folder, whose files are '
                           f'named as the reference names them: {", ".join(others)} cannot '
                           'be used with it')
    if not folder and args['pytorch_epoch'].present:
      raise cli.UsageError(f'--pytorch_epoch names the files of a folder; --{prefix} is a '
                           '.pth file')
  return mode


def run_import(args) -> dict:
  """--from_pytorch (a folder, or the files by role) into --workdir; import_run's summary."""
  if os.path.isdir(args.from_pytorch):
    paths = runs.folder_files(args.from_pytorch, args.pytorch_epoch)
  else:
    paths = {'G': args.from_pytorch, **{role: args[f'from_pytorch_{x}'].value
                                         for x, role in _ROLE_FLAGS.items()
                                         if args[f'from_pytorch_{x}'].value}}
  config = config_schema.load_file(args.config) if args.config else None
  return runs.import_run(paths, args.workdir, method=args.method, config=config,
                         direction=args.direction, norm=args.norm, seed=args.seed)


def _describe(arch: dict) -> str:
  return (f"{arch['generator']} G (ngf {arch['ngf']}, {arch['in_channels']} -> "
          f"{arch['out_channels']} channels, {arch['norm']} norm")


def _report_import(args, summary) -> str:
  seed = summary['config'].seed
  if summary['method'] == 'pix2pixhd':
    d = ('D converted' if summary['d_converted']
         else f'D initialised from seed {seed} (no --from_pytorch_d)')
    hd = summary['config'].pix2pixhd
    e = (f" + feature encoder E ({hd.feat_num} features per "
         f"{'label' if hd.label_feat else 'instance'}, {summary['e_params']:,} params)"
         if summary['e_converted'] else '')
    return (f"converted pix2pixHD {_describe(summary['arch'])}, {summary['g_params']:,} "
            f'params){e} from {args.from_pytorch} into {args.workdir} (config.json + '
            f'checkpoint step 0); {d}')
  if summary['method'] == 'pix2pix':
    d = ('D converted' if summary['d_converted']
         else f'D initialised from seed {seed} (no --from_pytorch_d)')
    return (f"converted pix2pix {_describe(summary['arch'])}, {summary['g_params']:,} params) "
            f'from {args.from_pytorch} into {args.workdir} (config.json + checkpoint step '
            f'0); {d}')
  rest = [n for n in ('G_A', 'G_B', 'D_A', 'D_B') if n not in summary['converted']]
  note = f'; {", ".join(rest)} initialised from seed {seed}' if rest else ''
  if 'G_B' in rest:
    note += ' (BtoA is refused until trained)'
  return (f"converted CycleGAN {', '.join(summary['converted'])}: "
          f"{_describe(summary['arch'])}, {summary['g_params']['G_A']:,} params each way) "
          f'from {args.from_pytorch} into {args.workdir} (config.json + checkpoint step 0, '
          f'empty image pools){note}')


def run_export(args) -> str:
  if args.to_pytorch.endswith('.pth'):
    outputs = {'G': args.to_pytorch, **{role: args[f'to_pytorch_{x}'].value
                                        for x, role in _ROLE_FLAGS.items()
                                        if args[f'to_pytorch_{x}'].value}}
  else:
    outputs = args.to_pytorch
  result = runs.export_run(args.workdir, outputs, which=cli.checkpoint_choice(args.checkpoint),
                           overwrite=args.overwrite, epoch=args.pytorch_epoch)
  written = ', '.join(f'{n} to {p}' for n, p in result['written'].items())
  lines = [f'wrote {written} (checkpoint step {result["step"]} of {args.workdir})']
  lines += [f'not written: {why}' for why in result['skipped'].values()]
  return '\n'.join(lines)


def run_pretrained(args) -> str:
  name = pretrained.resolve(args.pretrained)
  if args.workdir:
    path = pretrained.fetch(name, args.pretrained_dir)
    pretrained.convert_into(name, path, args.workdir)
    workdir = args.workdir
  else:
    workdir = pretrained.workdir_for(name, args.pretrained_dir)
  model = pretrained.MODELS[name]
  known = pretrained.p2p_dataset(name)
  data = (f'{model.dataset}, {model.direction}' if known else
          f"the reference's {model.dataset}, {model.direction}; a dataset this p2p_jax does "
          'not know')
  if model.method == 'pix2pix':
    rest = 'D initialised from the seed (none is published)'
  else:
    rest = ('its G_A (translate --direction=AtoB); G_B, D_A and D_B initialised from the '
            'seed (one generator is published; BtoA is refused until trained)')
  return f'{name} ({model.task}; {data}) is the p2p_jax workdir {workdir}: {rest}'


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def run():
    mode = _mode(args)
    if mode == 'export':
      print(run_export(args))
    elif mode == 'pretrained':
      print(run_pretrained(args))
    else:
      print(_report_import(args, run_import(args)))
    return 0
  return cli.run('p2p_jax.convert', run)


if __name__ == '__main__':
  sys.exit(main())
