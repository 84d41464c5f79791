"""The notebooks run top to bottom, and the README's commands are the ones the code accepts.

Each notebook runs in a fresh Jupyter kernel (nbclient) with P2P_NOTEBOOK_QUICK=1, which
shrinks every run to the smallest networks at 32 px and a few steps, and P2P_NOTEBOOK_DIR,
where everything it writes must go (the repository is left untouched). The kernel sees two
CPU devices, so the code that spreads batches over several devices (as on a Colab TPU) runs
too. Both notebooks together take about a minute and a half of CPU time.
"""

import json
import os
import re
import shlex
import sys

import nbformat
import pytest
from nbclient import NotebookClient

import conftest

ROOT = conftest.ROOT
NOTEBOOK_DIR = os.path.join(ROOT, 'notebooks')
NOTEBOOKS = ('quickstart.ipynb', 'anatomy.ipynb')
CELL_TIMEOUT_S = 600  # per cell; generous for a loaded machine, a hang still fails
# README test command: CI (.ci/run) must run exactly this line.
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest -q -n 2 --dist loadfile tests"
MAIN_COMMAND = ('pip install -e . && python -m p2p_jax.main --config=configs/demo.py '
                '--workdir=/tmp/p2p_demo')


def _read(path):
  with open(path) as f:
    return f.read()


def _kernel_env(out_dir: str) -> dict:
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update({
      'P2P_NOTEBOOK_QUICK': '1',
      'P2P_NOTEBOOK_DIR': out_dir,
      'JAX_PLATFORMS': 'cpu',
      'TF_CPP_MIN_LOG_LEVEL': '2',
      # Two devices (batches are split over them); unoptimised XLA code compiles several
      # times faster (~2 s of LLVM time per jax.random.normal call otherwise) and is fast
      # enough for a few 32 px steps.
      'XLA_FLAGS': ('--xla_force_host_platform_device_count=2 '
                    '--xla_backend_optimization_level=0'),
  })
  return env


@pytest.fixture
def kernel_spec(tmp_path, monkeypatch):
  """A kernel spec that runs this Python (not whatever 'python3' a user has installed)."""
  spec_dir = tmp_path / 'jupyter' / 'kernels' / 'p2p_jax_test'
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'p2p_jax test', 'language': 'python'}))
  monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
  # Connection files and IPython's profile go to the test's folder, not the home folder.
  monkeypatch.setenv('JUPYTER_RUNTIME_DIR', str(tmp_path / 'runtime'))
  monkeypatch.setenv('IPYTHONDIR', str(tmp_path / 'ipython'))
  return 'p2p_jax_test'


def _run(name: str, tmp_path, kernel_name: str):
  """Executes notebooks/<name> in place of a user, writing under tmp_path/out.

  Returns the executed notebook and its output folder; fails if the run wrote into the
  repository (its cwd or the repo root) instead.
  """
  before = _repo_snapshot()
  out = tmp_path / 'out'
  out.mkdir()
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
                          resources={'metadata': {'path': NOTEBOOK_DIR}})
  client.execute(env=_kernel_env(str(out)))  # raises CellExecutionError naming the cell
  assert _repo_snapshot() == before, f'{name} wrote into the repository'
  return nb, out


def _outputs(nb, kind: str) -> list:
  """All outputs of `kind` ('text' from streams, or a MIME type such as 'image/png')."""
  found = []
  for cell in nb.cells:
    for out in cell.get('outputs', []):
      if kind == 'text' and out.get('output_type') == 'stream':
        found.append(out['text'])
      elif kind in out.get('data', {}):
        found.append(out['data'][kind])
  return found


def _repo_snapshot():
  """Entries of the folders a notebook writes into by mistake (its cwd, the repo root)."""
  snap = set()
  for top in ('notebooks', '.'):
    folder = os.path.join(ROOT, top)
    snap.update(os.path.join(top, f) for f in os.listdir(folder))
  return snap


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert code, name
  for cell in code:
    assert not cell.outputs and cell.execution_count is None, (
        f'{name}: cell {cell.get("id")} holds outputs; store notebooks cleared')
  assert nb.metadata['kernelspec']['name'] == 'python3'
  # The Colab badge opens this very file.
  assert f'notebooks/{name})' in nb.cells[0].source, 'Colab badge of the wrong notebook'


def test_pictures_in_the_readme_and_notebooks_are_in_the_repository():
  """Every image a README or notebook markdown cell shows by relative path is committed next
  to it (the demo's result is what a reader sees before running anything)."""
  pages = [(ROOT, _read(os.path.join(ROOT, 'README.md')))]
  for name in NOTEBOOKS:
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    pages += [(NOTEBOOK_DIR, c.source) for c in nb.cells if c.cell_type == 'markdown']
  shown = [(folder, path) for folder, text in pages
           for path in re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', text)
           if '://' not in path]
  assert len(shown) >= 4, shown  # README: result + comparison; quickstart: result + curves
  for folder, path in shown:
    assert os.path.isfile(os.path.join(folder, path)), f'{path} (from {folder}) is missing'


def test_quickstart_runs(tmp_path, kernel_spec):
  nb, out = _run('quickstart.ipynb', tmp_path, kernel_spec)
  text = ''.join(_outputs(nb, 'text'))

  assert f'p2p_jax from {ROOT};' in text  # used this checkout: no clone, no install
  assert 'CPU backend: 2 device(s)' in text  # says which devices it uses
  assert 'on 2 cpu device(s)' in text  # and trains on them
  workdir = out / 'demo'
  assert {d for d in os.listdir(workdir / 'checkpoints') if d.isdigit()} == {'2', '4'}
  assert {f for f in os.listdir(workdir / 'samples') if f.endswith('.png')} == {
      'step_0000002.png', 'step_0000004.png'}
  for mode in ('paper', 'eval'):
    summary = json.loads((workdir / 'eval' / f'test_step4_{mode}' / 'metrics.json').read_text())
    assert summary['mode'] == mode and summary['num_images'] == 16  # every test tile
  # The embedded dataset was prepared under the notebook's folder, not ~/tensorflow_datasets.
  assert (out / 'tensorflow_datasets' / 'pix2pix_aligned' / 'blue_marble').is_dir()
  # Samples during training, the evaluation grid, two translations.
  assert len(_outputs(nb, 'image/png')) >= 4


def test_anatomy_runs(tmp_path, kernel_spec):
  nb, out = _run('anatomy.ipynb', tmp_path, kernel_spec)

  tables = '\n'.join(_outputs(nb, 'text/markdown'))
  assert '| generator (unet_256) | 54,413,955 | 54,413,955 |' in tables
  assert '| discriminator (70x70, 6 channels) | 2,768,705 | 2,768,705 |' in tables
  assert '| 3 | 70 | 70 | 30x30 |' in tables  # receptive field row of the paper's D
  # pix2pixHD's published generators, counted from the official layer list.
  assert '| LocalEnhancer (label2city_1024p, ngf 32) | 182,857,059 | 182,857,059 |' in tables
  assert '| GlobalGenerator (label2city_512p, ngf 64) | 182,546,755 | 182,546,755 |' in tables
  assert '| l1+cgan |' in tables and '| l1 |' in tables
  for name, gan_weight in (('l1', 0.0), ('l1_cgan', 1.0)):
    saved = json.loads((out / f'ablation_{name}' / 'config.json').read_text())
    assert saved['loss']['gan_weight'] == gan_weight
    assert os.listdir(out / f'ablation_{name}' / 'checkpoints')
  assert _outputs(nb, 'image/png'), 'no side-by-side images'


# ---------------------------------------------------------------- README


def _readme_commands() -> list[list[str]]:
  """Every `python -m p2p_jax...` command in the README's shell blocks, as argv lists."""
  blocks = re.findall(r'```(?:bash|sh|shell)\n(.*?)```', _read(os.path.join(ROOT, 'README.md')),
                      re.S)
  commands = []
  for block in blocks:
    for line in block.replace('\\\n', ' ').splitlines():
      words = shlex.split(line, comments=True)  # a quoted --command="..." stays one word
      parts, argv = [], []
      for word in words + ['&&']:
        if word in ('&&', ';', '||'):
          parts.append(argv)
          argv = []
        else:
          argv.append(word)
      for argv in parts:
        while argv and re.match(r'^[A-Z_]+=', argv[0]):  # VAR=value prefixes
          argv = argv[1:]
        if argv[:2] == ['python', '-m'] and argv[2].startswith('p2p_jax.'):
          commands.append(argv[2:])
  return commands


def test_readme_setup_commands_are_what_ci_runs():
  readme = _read(os.path.join(ROOT, 'README.md'))
  assert MAIN_COMMAND in readme and TEST_COMMAND in readme
  ci = [line.strip() for line in _read(os.path.join(ROOT, '.ci', 'run')).splitlines()]
  assert TEST_COMMAND in ci, '.ci/run must run the README test command verbatim'


def _parse_main_flags(args):
  """The config `python -m p2p_jax.main ARGS` would train with (main.py's own flags)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  values = flags.FlagValues()
  flags.DEFINE_string('workdir', None, '', flag_values=values)
  argv = ['main', *args]
  # sys_argv: config_flags defines the --config.<field> override flags it finds there.
  config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  assert values.workdir, args
  return values.config


@pytest.mark.filterwarnings('ignore:the load_module:DeprecationWarning')  # config_flags
def test_readme_commands_are_accepted_by_the_code(monkeypatch):
  from p2p_jax import (config_schema, convert, encode_features, evaluate, export,  # pylint: disable=g-import-not-at-top
                       translate)
  monkeypatch.chdir(ROOT)  # config paths are relative to the repository root
  parsers = {'p2p_jax.evaluate': evaluate.parse_args, 'p2p_jax.translate': translate.parse_args,
             'p2p_jax.export': export.parse_args, 'p2p_jax.convert': convert.parse_args,
             'p2p_jax.encode_features': encode_features.parse_args}
  commands = _readme_commands()
  assert {c[0] for c in commands} >= {'p2p_jax.main', *parsers}, commands
  for module, *args in commands:
    shown = f'README: python -m {module} {" ".join(args)}'
    if module in parsers:
      try:
        parsers[module](args)
      except SystemExit as e:
        pytest.fail(f'{shown} is rejected (exit {e})')
      continue
    assert module == 'p2p_jax.main', shown
    try:
      config_schema.validate(_parse_main_flags(args))
    except Exception as e:  # pylint: disable=broad-except  # absl raises several kinds
      pytest.fail(f'{shown} is rejected: {type(e).__name__}: {e}')


def test_readme_links_point_to_files():
  readme = _read(os.path.join(ROOT, 'README.md'))
  for path in re.findall(r'\]\((?!https?://|#)([^)\s]+)\)', readme):
    assert os.path.exists(os.path.join(ROOT, path)), f'README links to missing {path}'
  for name in re.findall(r'colab\.research\.google\.com/github/[^)\s]+/notebooks/([\w.]+)',
                         readme):
    assert os.path.isfile(os.path.join(NOTEBOOK_DIR, name)), name
