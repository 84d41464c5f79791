"""The generators the PyTorch reference publishes, by name, from a local cache.

junyanz/pytorch-CycleGAN-and-pix2pix publishes 5 pix2pix generators (its
scripts/download_pix2pix_model.sh; U-Net-256, ngf 64, batch norm, its dropout placement) at
`<PIX2PIX_URL>/<name>.pth` and 18 CycleGAN generators (scripts/download_cyclegan_model.sh;
resnet_9blocks, ngf 64, instance norm, no dropout: what its documented
`test.py --model test --no_dropout` builds and loads strictly) at `<CYCLEGAN_URL>/<name>.pth`,
one generator per file, 3 -> 3 channels. Each was trained on one dataset in one direction
(pretrained_models.py), which the name fixes here together with the model block, so
`--pretrained=NAME` needs nothing else.

Names: `pix2pix.<name>` or `cyclegan.<name>`; a bare `<name>` where only one method
publishes it. sat2map, map2sat and facades_label2photo are published by both: the bare
name is refused with one line naming the two (`resolve`).

Cache (`--pretrained_dir`, default $XDG_CACHE_HOME/p2p_jax/pretrained, i.e.
~/.cache/p2p_jax/pretrained):
  <dir>/<name>.pth, <dir>/<name>/                    pix2pix: the published file (used if
                                                     present, else downloaded on first use
                                                     into a temporary file renamed when
                                                     complete) and the workdir converted
                                                     from it once
  <dir>/cyclegan/<name>.pth, <dir>/cyclegan/<name>/  CycleGAN: the same; the workdir's G_A
                                                     is the published G (its G_B is none:
                                                     BtoA is refused, see cyclegan_workdir)
Offline, the first use fails at once (a TCP probe of the server) with the URL and the
exact path where to put the file; the tools check that before their heavy imports
(`exit_if_unreachable`), so it takes a second, not twenty. First use says what it does as
it does it: downloading, converting (once), compiling (the tools).
P2P_JAX_PRETRAINED_URL and P2P_JAX_CYCLEGAN_PRETRAINED_URL replace the two URL bases
(mirrors; tests serve files from a local HTTP server).

Importing this module is light (no JAX, no torch): the tools import it first.
"""

import os
import sys
import time

from p2p_jax import compile_cache, downloads
from p2p_jax.datasets import catalog
from p2p_jax.pytorch.pretrained_models import MODELS, Pretrained  # noqa: F401

URL_BASE = {'pix2pix': 'http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch',
            'cyclegan': 'http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models'}
URL_ENV = 'P2P_JAX_PRETRAINED_URL'
URL_ENVS = {'pix2pix': URL_ENV, 'cyclegan': 'P2P_JAX_CYCLEGAN_PRETRAINED_URL'}

# What every published generator of a method is; the converted tensors are checked
# against it.
ARCH = dict(generator='unet_256', ngf=64, in_channels=3, out_channels=3, norm='batch',
            dropout_placement='pytorch')
CYCLEGAN_ARCH = dict(generator='resnet_9blocks', ngf=64, in_channels=3, out_channels=3,
                     norm='instance', dropout=False)

_BARE = {}
for _qualified, _model in MODELS.items():
  _BARE.setdefault(_model.name, []).append(_qualified)
# What --pretrained accepts: every qualified name, and the bare names of one method.
NAMES = tuple(MODELS) + tuple(n for n, q in _BARE.items() if len(q) == 1)


class PretrainedError(ValueError):
  """An unknown name, or a published file that cannot be had or used; one line."""


def default_dir() -> str:
  """<p2p_jax's cache root>/pretrained: ~/.cache/p2p_jax/pretrained unless
  $P2P_JAX_CACHE_DIR or $XDG_CACHE_HOME say otherwise (compile_cache.cache_root)."""
  return os.path.join(compile_cache.cache_root(), 'pretrained')


def resolve(name: str) -> str:
  """The qualified name ('cyclegan.horse2zebra') of a --pretrained value. Raises
  PretrainedError naming the choices for a name two methods publish or an unknown one."""
  if name in MODELS:
    return name
  qualified = _BARE.get(name, [])
  if len(qualified) == 1:
    return qualified[0]
  if qualified:
    raise PretrainedError(f'{name} is published for both methods: pass '
                          + ' or '.join(f'--pretrained={q} ({MODELS[q].task}, '
                                        f'{MODELS[q].generator})' for q in qualified))
  raise PretrainedError(f'unknown pretrained model {name!r}; the reference publishes '
                        + '; '.join(f'{m}: ' + ', '.join(q.split('.', 1)[1] for q in MODELS
                                                          if q.startswith(m + '.'))
                                    for m in URL_BASE)
                        + ' (a name both publish needs its method: pix2pix.NAME, '
                        'cyclegan.NAME)')


def model(name: str) -> Pretrained:
  """The published model a --pretrained value names."""
  return MODELS[resolve(name)]


def url_for(name: str) -> str:
  """<the method's URL base>/<name>.pth (or the base in its environment variable)."""
  m = model(name)
  base = os.environ.get(URL_ENVS[m.method]) or URL_BASE[m.method]
  return base.rstrip('/') + f'/{m.name}.pth'


def _cache(name: str, directory: str | None) -> tuple[str, str]:
  """(the .pth path, the workdir path) of a model in the cache folder."""
  m = model(name)
  directory = os.path.abspath(os.path.expanduser(directory or default_dir()))
  if m.method == 'cyclegan':
    directory = os.path.join(directory, 'cyclegan')
  return os.path.join(directory, f'{m.name}.pth'), os.path.join(directory, m.name)


def p2p_dataset(name: str) -> str | None:
  """config.data.dataset that p2p_jax knows for the model's data, or None."""
  m = model(name)
  return m.dataset if m.dataset in catalog.DATASETS else None


def config_for(name: str):
  """The config of a published model: its method, architecture and the data it was
  trained on (where p2p_jax knows that dataset; else the method's default data)."""
  # pylint: disable=g-import-not-at-top (they import jax)
  from p2p_jax import config_schema
  from p2p_jax.pytorch import cyclegan_workdir
  m = model(name)
  if m.method == 'cyclegan':
    config = cyclegan_workdir.reference_config()
    config.model.update(CYCLEGAN_ARCH)
  else:
    config = config_schema.get_config()
    config.model.update(ARCH)
  if p2p_dataset(name):
    config.data.dataset = m.dataset
    config.data.eval_split = m.eval_split
  config.data.direction = m.direction
  config.batch_size = m.batch_size
  return config


def check_evaluable(name: str) -> None:
  """Raises PretrainedError (before any download) when `evaluate` has nothing to score the
  model with: a published CycleGAN generator is one G (no G_B for the cycle L1) whose test
  split is unpaired (no target); or p2p_jax does not know the dataset."""
  m, qualified = model(name), resolve(name)
  if m.method == 'cyclegan':
    raise PretrainedError(
        f'{qualified} is one generator ({m.task}) and the test split of {m.dataset} is '
        'unpaired: there is no target to score its outputs against and no G_B for the cycle '
        f'L1 of a CycleGAN; translate works (--pretrained={name}), and a converted copy '
        f'(python -m p2p_jax.convert --pretrained={qualified} --workdir=DIR) fine-tunes '
        'with its G_B and Ds on that data (python -m p2p_jax.main --workdir=DIR)')
  if not p2p_dataset(name):
    raise PretrainedError(f'{qualified} was trained on the reference\'s {m.dataset} dataset, '
                          'which this p2p_jax does not know: translate works')


def fetch(name: str, directory: str | None = None) -> str:
  """Path of the model's .pth file in the cache `directory`, downloaded from the official
  URL if not there yet. Raises PretrainedError (one line: the URL and where to put the
  file) when the server cannot be reached or the download fails; no partial file is left
  behind."""
  path, _ = _cache(name, directory)
  url = url_for(name)
  if os.path.isfile(path):
    return path
  why_not = downloads.unreachable(url)
  if why_not:
    raise PretrainedError(_unreachable(resolve(name), path, url, why_not))
  print(f'p2p_jax: downloading {url} -> {path}', flush=True)
  start = time.perf_counter()
  try:
    downloads.download(url, path)
  except downloads.DownloadError as e:
    raise PretrainedError(f'{resolve(name)}: download failed ({e}); {_fix(path, url)}') from None
  print(f'p2p_jax: downloaded {os.path.getsize(path) / 2**20:.0f} MB in '
        f'{time.perf_counter() - start:.0f} s', flush=True)
  return path


def _fix(path: str, url: str) -> str:
  return f'download {url} yourself and put it at {path} (or pass --pretrained_dir)'


def _unreachable(name: str, path: str, url: str, why_not: str) -> str:
  return (f'{name}: {path} is not there and {url} cannot be reached ({why_not}); '
          f'{_fix(path, url)}')


def _flag(argv: list[str], name: str) -> str | None:
  """The value of --name=V or --name V in `argv` (absl's two forms), else None."""
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def exit_if_unreachable(argv: list[str], prog: str) -> None:
  """For a tool's first lines, before JAX is imported: when `argv` asks for --pretrained=NAME
  that is neither converted nor downloaded yet and its server cannot be reached (offline),
  says so in one line and exits 2 at once; returns otherwise (the tool then reports any
  other problem itself, an unknown or ambiguous name included)."""
  name = _flag(argv, 'pretrained')
  try:
    qualified = resolve(name) if name else None
  except PretrainedError:
    return
  if qualified is None:
    return
  path, workdir = _cache(qualified, _flag(argv, 'pretrained_dir'))
  if os.path.isfile(os.path.join(workdir, 'config.json')) or os.path.isfile(path):
    return
  why_not = downloads.unreachable(url_for(qualified))
  if why_not:
    print(f'{prog}: error: {_unreachable(qualified, path, url_for(qualified), why_not)}',
          file=sys.stderr, flush=True)
    raise SystemExit(2)


def workdir_for(name: str, directory: str | None = None) -> str:
  """The p2p_jax workdir of a published model in the cache folder, converted from the
  .pth file (fetched if needed) the first time and reused afterwards."""
  from p2p_jax import workdirs  # pylint: disable=g-import-not-at-top (imports jax)
  _, workdir = _cache(name, directory)
  if os.path.isfile(os.path.join(workdir, workdirs.CONFIG_FILE)):
    return workdir
  path = fetch(name, directory)
  print(f'p2p_jax: converting {path} into the p2p_jax workdir {workdir} (once: later uses '
        'load it directly; this builds and compiles the training state, a minute or two on '
        'a CPU)', flush=True)
  start = time.perf_counter()
  convert_into(name, path, workdir)
  print(f'p2p_jax: converted in {time.perf_counter() - start:.0f} s', flush=True)
  return workdir


def _untrained_hint(m: Pretrained) -> str:
  if not m.counterpart:
    return (f'{m.name}.pth holds one generator ({m.task}); the reference publishes none for '
            'the other direction')
  other = f'{m.method}.{m.counterpart}'
  shown = other if len(_BARE[m.counterpart]) > 1 else m.counterpart
  return (f'{m.name}.pth holds one generator ({m.task}); for {MODELS[other].task} use '
          f'--pretrained={shown}')


def convert_into(name: str, path: str, workdir: str) -> dict:
  """Converts the published file `path` of model `name` into `workdir` with the model's
  config (pix2pix: D from the seed; CycleGAN: G_A is the file's G, G_B and both Ds from
  the seed: the reference publishes only that G). Raises PretrainedError when the file is
  not the architecture every published model of its method has."""
  # pylint: disable=g-import-not-at-top (torch and jax, only now)
  from p2p_jax.pytorch import cyclegan_workdir, files, weights, workdir as workdir_lib
  m, qualified = model(name), resolve(name)
  g_sd = files.read_pth(path)
  _, arch = weights.generator_from_torch(g_sd, source=path)
  want = CYCLEGAN_ARCH if m.method == 'cyclegan' else ARCH
  if arch != want:
    raise PretrainedError(f'{path}: holds a {arch["generator"]} (ngf {arch["ngf"]}, '
                          f'{arch["norm"]} norm), not the {want["generator"]} (ngf '
                          f'{want["ngf"]}, {want["norm"]} norm) the reference publishes as '
                          f'{qualified}; delete it to download it again')
  record = {'pretrained': qualified, 'dataset': m.dataset, 'url': url_for(name)}
  if m.method == 'pix2pix':
    return workdir_lib.import_weights(g_sd, workdir, config=config_for(name), g_source=path,
                                      record=record)
  return cyclegan_workdir.import_weights({'G_A': g_sd}, workdir, config=config_for(name),
                                        sources={'G_A': path}, record=record,
                                        untrained_hint=_untrained_hint(m))
