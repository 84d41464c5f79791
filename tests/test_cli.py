"""The command-line tools speak one style: absl flags, each with help text, --help exits 0,
a misspelt flag is one line naming it."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from p2p_jax import cli, convert, encode_features, evaluate, export, translate

TOOLS = {'p2p_jax.evaluate': evaluate, 'p2p_jax.translate': translate,
         'p2p_jax.export': export, 'p2p_jax.convert': convert,
         'p2p_jax.encode_features': encode_features}


@pytest.mark.parametrize('name', sorted(TOOLS))
def test_every_flag_has_help_and_help_exits_zero(name, capsys):
  module = TOOLS[name]
  fv = cli.flags.FlagValues()
  module.define_flags(fv)
  flags = fv.flags_by_module_dict()
  missing = [f.name for fs in flags.values() for f in fs if not (f.help or '').strip()]
  assert not missing, f'{name}: flags without help: {missing}'
  with pytest.raises(SystemExit) as e:
    module.main(['--help'])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert all(f'--{f.name}' in out for fs in flags.values() for f in fs)
  assert '(default:' in out
  # The usage lines read as written: no shell continuation swallowed into a run of spaces.
  usage = [line for line in out.splitlines() if line.startswith(f'  python -m {name}')]
  assert usage and not any('   ' in line.strip() for line in usage), usage


@pytest.mark.parametrize('name', sorted(TOOLS))
def test_a_misspelt_flag_is_one_line(name, capsys):
  with pytest.raises(SystemExit) as e:
    TOOLS[name].main(['--workdir=w', '--chekpoint=best'])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert 'chekpoint' in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1


def test_main_help_exits_zero():
  result = subprocess.run([sys.executable, '-m', 'p2p_jax.main', '--help'], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, P2P_JAX_KEEP_MALLOC='1'))
  assert result.returncode == 0, result.stderr
  for flag in ('--config', '--workdir', '--compilation_cache'):
    assert flag in result.stdout


def test_a_full_disk_is_one_line_and_other_os_errors_are_not_hidden(capsys):
  def full():
    raise OSError(28, 'No space left on device', '/data/out/grid.png')
  assert cli.run('p2p_jax.evaluate', full) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith(
      'p2p_jax.evaluate: error: /data/out/grid.png: No space left on device;'), err

  def broken():
    raise OSError(5, 'Input/output error')   # not the user's to fix: the traceback stays
  with pytest.raises(OSError, match='Input/output'):
    cli.run('p2p_jax.evaluate', broken)
