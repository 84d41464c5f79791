"""The command-line re-execution with glibc's huge-page malloc tunable (host_memory.py)."""

import os
import subprocess
import sys

import pytest

from p2p_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGV = ['python', '-m', 'p2p_jax.main', '--config=configs/demo.py', '--workdir=/tmp/w']


@pytest.fixture
def thp(tmp_path):
  """A stand-in for /sys/kernel/mm/transparent_hugepage/enabled with a given setting."""
  def write(setting):
    path = tmp_path / 'enabled'
    path.write_text(setting + '\n')
    return str(path)
  return write


needs_glibc = pytest.mark.skipif(
    not sys.platform.startswith('linux') or host_memory._libc() is None, reason='glibc only')


@needs_glibc
def test_command_adds_the_tunable_and_keeps_the_rest(thp):
  env = {'PATH': '/bin', 'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}
  exe, argv, new_env = host_memory.hugepage_command(
      env, ARGV, executable='/venv/bin/python', thp_path=thp('always [madvise] never'))
  assert exe == '/venv/bin/python'
  assert argv == ['/venv/bin/python'] + ARGV[1:]  # the same module and flags
  assert new_env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  assert new_env['PATH'] == '/bin'
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2'  # the caller's dict untouched


@needs_glibc
@pytest.mark.parametrize('env, setting', [
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, '[always] madvise never'),  # done: no loop
    ({host_memory.OPT_OUT_ENV: '1'}, '[always] madvise never'),  # opted out
    ({}, 'always madvise [never]'),  # the kernel gives no huge pages: nothing to gain
])
def test_no_reexec_when_set_opted_out_or_useless(thp, env, setting):
  assert host_memory.hugepage_command(env, ARGV, thp_path=thp(setting)) is None


@needs_glibc
def test_reexec_really_restarts_with_the_tunable():
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', host_memory.OPT_OUT_ENV)}
  code = ('import os; from p2p_jax import host_memory as h; print("start", flush=True); '
          'h.reexec_with_hugepage_malloc(); print(os.environ.get("GLIBC_TUNABLES"))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  if host_memory._thp_available():  # started twice, the second time with the tunable
    assert out.stdout.split() == ['start', 'start', host_memory.HUGEPAGE_TUNABLE]
  else:
    assert out.stdout.split() == ['start', 'None']


def test_main_cli_still_parses_its_flags():
  out = subprocess.run([sys.executable, '-m', 'p2p_jax.main', '--workdir=/nonexistent/w'],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  # After the (possible) re-execution absl parses the flags and names the missing one.
  assert out.returncode == 1
  assert "Flag --config must have a value other than None" in out.stderr, out.stderr


def test_release_free_memory_runs():
  assert host_memory.release_free_memory() is (host_memory._libc() is not None)
