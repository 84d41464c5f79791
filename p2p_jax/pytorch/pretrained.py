"""The five generators the PyTorch reference publishes, by name, from a local cache.

junyanz/pytorch-CycleGAN-and-pix2pix publishes pix2pix generators (its
scripts/download_pix2pix_model.sh) at `<URL_BASE>/<name>.pth`: U-Net-256, ngf 64, batch
norm, 3 -> 3 channels, trained with its dropout placement. Each was trained on one official
dataset in one direction (below), which the name fixes here together with the model block,
so `--pretrained=NAME` needs nothing else.

Cache (`--pretrained_dir`, default $XDG_CACHE_HOME/p2p_jax/pretrained, i.e.
~/.cache/p2p_jax/pretrained):
  <dir>/<name>.pth   the published file: used if present, else downloaded on first use
                     (into a temporary file renamed when complete)
  <dir>/<name>/      a p2p_jax workdir converted from it once (p2p_jax.pytorch.workdir)
Offline, the first use fails at once (a TCP probe of the server) with the URL and the
exact path where to put the file; the tools check that before their heavy imports
(`exit_if_unreachable`), so it takes a second, not twenty. First use says what it does as
it does it: downloading, converting (once), compiling (the tools). P2P_JAX_PRETRAINED_URL
replaces URL_BASE (a mirror; tests serve files from a local HTTP server).

Importing this module is light (no JAX, no torch): the tools import it first.
"""

import dataclasses
import os
import sys
import time

from p2p_jax import compile_cache, downloads

URL_BASE = 'http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch'
URL_ENV = 'P2P_JAX_PRETRAINED_URL'


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """One published model: what it translates and the data it was trained on."""
  dataset: str       # p2p_jax's name of the official dataset (config.data.dataset)
  direction: str     # config.data.direction the reference trained it with
  task: str          # input -> output, in words
  eval_split: str    # the split `evaluate --pretrained` scores by default
  batch_size: int    # the paper's batch size for the dataset (for fine-tuning)


# Directions: facades from the reference's README ("--direction BtoA as Facades dataset's A
# to B direction is photos to labels"); day2night from its docs/datasets.md ("To train a
# day2night pix2pix model, you need to add --direction BtoA"); sat2map / map2sat /
# edges2shoes from the datasets' layouts (maps: A = aerial photo, B = map; edges2shoes:
# A = edges, B = photo; configs/maps.py, configs/edges2shoes.py).
MODELS = {
    'facades_label2photo': Pretrained('facades', 'BtoA', 'facade label map -> photo', 'test', 1),
    'sat2map': Pretrained('maps', 'AtoB', 'aerial photo -> map', 'val', 1),
    'map2sat': Pretrained('maps', 'BtoA', 'map -> aerial photo', 'val', 1),
    'edges2shoes': Pretrained('edges2shoes', 'AtoB', 'shoe edges -> photo', 'val', 4),
    'day2night': Pretrained('night2day', 'BtoA', 'daytime scene -> night', 'test', 4),
}

# What every published generator is; the converted tensors are checked against it.
ARCH = dict(generator='unet_256', ngf=64, in_channels=3, out_channels=3, norm='batch',
            dropout_placement='pytorch')


class PretrainedError(ValueError):
  """An unknown name, or a published file that cannot be had or used; one line."""


def default_dir() -> str:
  """<p2p_jax's cache root>/pretrained: ~/.cache/p2p_jax/pretrained unless
  $P2P_JAX_CACHE_DIR or $XDG_CACHE_HOME say otherwise (compile_cache.cache_root)."""
  return os.path.join(compile_cache.cache_root(), 'pretrained')


def _model(name: str) -> Pretrained:
  if name not in MODELS:
    raise PretrainedError(f'unknown pretrained model {name!r}; the reference publishes '
                          f'{", ".join(MODELS)}')
  return MODELS[name]


def url_for(name: str) -> str:
  """<URL_BASE>/<name>.pth (or the base in $P2P_JAX_PRETRAINED_URL)."""
  _model(name)
  return (os.environ.get(URL_ENV) or URL_BASE).rstrip('/') + f'/{name}.pth'


def config_for(name: str):
  """The config of a published model: its architecture and the data it was trained on."""
  from p2p_jax import config_schema  # pylint: disable=g-import-not-at-top (imports jax)
  model = _model(name)
  config = config_schema.get_config()
  config.model.update(ARCH)
  config.data.dataset = model.dataset
  config.data.direction = model.direction
  config.data.eval_split = model.eval_split
  config.batch_size = model.batch_size
  return config


def fetch(name: str, directory: str | None = None) -> str:
  """Path of <directory>/<name>.pth, downloaded from the official URL if not there yet.

  Raises PretrainedError (one line: the URL and where to put the file) when the server
  cannot be reached or the download fails; no partial file is left behind.
  """
  directory = os.path.abspath(os.path.expanduser(directory or default_dir()))
  path = os.path.join(directory, f'{name}.pth')
  url = url_for(name)
  if os.path.isfile(path):
    return path
  why_not = downloads.unreachable(url)
  if why_not:
    raise PretrainedError(_unreachable(name, path, url, why_not))
  print(f'p2p_jax: downloading {url} -> {path}', flush=True)
  start = time.perf_counter()
  try:
    downloads.download(url, path)
  except downloads.DownloadError as e:
    raise PretrainedError(f'{name}: download failed ({e}); {_fix(path, url)}') from None
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
  other problem itself)."""
  name = _flag(argv, 'pretrained')
  if name not in MODELS:
    return
  directory = os.path.abspath(os.path.expanduser(_flag(argv, 'pretrained_dir') or default_dir()))
  path = os.path.join(directory, f'{name}.pth')
  if os.path.isfile(os.path.join(directory, name, 'config.json')) or os.path.isfile(path):
    return
  why_not = downloads.unreachable(url_for(name))
  if why_not:
    print(f'{prog}: error: {_unreachable(name, path, url_for(name), why_not)}',
          file=sys.stderr, flush=True)
    raise SystemExit(2)


def workdir_for(name: str, directory: str | None = None) -> str:
  """The p2p_jax workdir of a published model: <directory>/<name>/, converted from the
  .pth file (fetched if needed) the first time and reused afterwards."""
  from p2p_jax import workdirs  # pylint: disable=g-import-not-at-top (imports jax)
  directory = os.path.abspath(os.path.expanduser(directory or default_dir()))
  workdir = os.path.join(directory, name)
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


def convert_into(name: str, path: str, workdir: str) -> dict:
  """Converts the published file `path` of model `name` into `workdir` with the model's
  config (D initialised from the seed: the reference publishes no D). Raises
  PretrainedError when the file is not the architecture every published model has."""
  # pylint: disable=g-import-not-at-top (torch and jax, only now)
  from p2p_jax.pytorch import files, weights, workdir as workdir_lib
  g_sd = files.read_pth(path)
  _, arch = weights.generator_from_torch(g_sd, source=path)
  if arch != ARCH:
    raise PretrainedError(f'{path}: holds a {arch["generator"]} (ngf {arch["ngf"]}, '
                          f'{arch["norm"]} norm), not the unet_256 the reference publishes '
                          f'as {name}; delete it to download it again')
  return workdir_lib.import_weights(g_sd, workdir, config=config_for(name), g_source=path)
