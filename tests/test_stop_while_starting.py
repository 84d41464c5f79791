"""A stop request before the first step ends `python -m p2p_jax.main` at once, with exit 75.

Before the first step there is nothing new to save, so SIGTERM must not wait: not for the
imports (it used to find Python's default action: exit 143, no output), not for
host_memory's re-execution of the process, not for XLA compiling the step (no Python
signal handler runs while the main thread is in C++; a Kubernetes grace period is 30 s, a
compile at 256 px a minute or more). Each test starts a real command and sends the signal
at a moment it can see from outside: the handler installed (the process's caught-signal
mask in /proc), the signals held blocked across execve (its blocked mask), a line the run
prints just before a compilation made long on purpose.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from p2p_jax import host_memory, stopping, workdirs

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)
LINE = ('p2p_jax: stopped by SIGTERM while starting (no new step to save); run the same '
        'command to resume')


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', **extra)
  env['XLA_FLAGS'] = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                            env.get('XLA_FLAGS', '')).strip()
  return env


def _mask(pid: int, field: str) -> int | None:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1], 16)
  except OSError:
    pass
  return None


def _main(workdir, *args, env=None, command=None):
  return subprocess.Popen(
      command or [sys.executable, '-m', 'p2p_jax.main', '--config=configs/tiny.py',
                  f'--workdir={workdir}', *args],
      cwd=ROOT, env=env or _env(P2P_JAX_KEEP_MALLOC='1'), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)


def _when(process, field, bit=SIGTERM_BIT, timeout=60) -> bool:
  """Polls the process's /proc status until `field` has `bit`; False if it never did."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and process.poll() is None:
    mask = _mask(process.pid, field)
    if mask is not None and mask & bit:
      return True
  return False


def test_sigterm_while_importing_exits_75(tmp_path):
  process = _main(tmp_path / 'run')
  assert _when(process, 'SigCgt')                # main.py's first lines ran: the handler
  process.send_signal(signal.SIGTERM)            # ... while it imports jax and the rest
  output, _ = process.communicate(timeout=30)
  assert (process.returncode, output.strip()) == (stopping.EXIT_PREEMPTED, LINE)
  assert not (tmp_path / 'run').exists()


@pytest.mark.skipif(host_memory.hugepage_command() is None and
                    host_memory.hugepage_command({}) is None,
                    reason='no re-execution here (no transparent huge pages or not glibc)')
def test_sigterm_during_the_re_execution_exits_75(tmp_path):
  """Between execve and the new process's handler the signals are held blocked: a SIGTERM
  sent then stays pending and reaches the handler (the window is ~50 ms: tried a few
  times)."""
  env = _env()
  env.pop(host_memory.OPT_OUT_ENV, None)
  env.pop('GLIBC_TUNABLES', None)
  hits = []
  for _ in range(5):
    process = _main(tmp_path / 'run', env=env)
    held = _when(process, 'SigBlk')
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert (process.returncode, output.strip()) == (stopping.EXIT_PREEMPTED, LINE), output
    hits.append(held)
    if held:
      break
  assert any(hits), 'never caught the process with its signals held'


# A compilation that takes seconds (a long chain of unrolled ops), run where the trainer
# compiles its step; 'compiling' is printed first, 'compiled' after it.
_DRIVER = r'''
import runpy, sys
import jax, jax.numpy as jnp
from p2p_jax import parallel
real = parallel.DataParallel.precompile

def slow_precompile(self, *args):
  body = lambda i, x: jnp.sin(x) * 1.0001 + jnp.cos(x * i)
  lowered = jax.jit(lambda x: jax.lax.fori_loop(0, 6000, body, x, unroll=True)).lower(
      jnp.ones((64, 64)))
  print('compiling', flush=True)
  lowered.compile()
  print('compiled', flush=True)
  return real(self, *args)

parallel.DataParallel.precompile = slow_precompile
sys.argv = ['p2p_jax.main', *sys.argv[1:]]
runpy.run_module('p2p_jax.main', run_name='__main__', alter_sys=True)
'''


def test_sigterm_while_compiling_exits_75_within_seconds(tmp_path, blue_marble_data_dir):
  workdir = tmp_path / 'new' / 'run'   # made by the trainer, with its parent
  env = _env(P2P_JAX_KEEP_MALLOC='1')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)     # a real compilation, not a cache hit
  process = _main(workdir, command=[
      sys.executable, '-c', _DRIVER, '--config=configs/tiny.py', f'--workdir={workdir}',
      f'--config.data.data_dir={blue_marble_data_dir}', '--compilation_cache=none'], env=env)
  lines = []
  for line in process.stdout:
    lines.append(line.rstrip())
    if line.startswith('compiling'):
      break
  assert lines and lines[-1] == 'compiling', lines
  assert (workdir / workdirs.LOCK_FILE).exists()  # the trainer holds its workdir
  time.sleep(0.5)                                 # inside XLA's compiler now
  process.send_signal(signal.SIGTERM)
  sent = time.monotonic()
  output, _ = process.communicate(timeout=120)
  took = time.monotonic() - sent
  assert process.returncode == stopping.EXIT_PREEMPTED, output
  assert output.strip() == LINE                   # not 'compiled': it did not wait for it
  assert took < 5, took
  # The lock released cleanly (no stale lock for the next run); no folder the run made
  # is left (the workdir, its parent, checkpoints/), since it saved nothing.
  assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


ONE_SHOT = {
    'p2p_jax.encode_features': 'the clusters file is as it was (none written)',
    'p2p_jax.translate': 'the images written before it are whole, the others not written',
    'p2p_jax.evaluate': 'no results written; its results folder is as it was',
    'p2p_jax.export': 'no SavedModel written; its folder is as it was',
    'p2p_jax.convert': ('nothing half-made is left: a new workdir or .pth file appears only '
                        'whole, an existing .pth file is as it was')}
ONE_SHOT_ARGS = {
    'p2p_jax.translate': lambda w: ['--input=x.png', f'--output={w}/y.png'],
    'p2p_jax.convert': lambda w: [f'--from_pytorch={w}/net_G.pth', f'--workdir={w}/new']}


@pytest.mark.parametrize('tool', sorted(ONE_SHOT))
@pytest.mark.parametrize('sig, status', [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_one_shot_commands_stop_at_once_with_one_line_and_no_file(tmp_path, tool, sig,
                                                                 status):
  """Commands whose outputs are whole files (stopping.stop_at_once): a stop request while
  they import ends them with one line, 128 + the signal (a Ctrl-C raised as
  KeyboardInterrupt there could be lost in a garbage-collection callback, and the command
  go on to write its files)."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  args = ONE_SHOT_ARGS.get(tool, lambda w: [f'--workdir={w}'])(workdir)
  process = _main(workdir, command=[sys.executable, '-m', tool, *args])
  # Python catches SIGINT from its start; SIGTERM caught means the command's handlers are.
  assert _when(process, 'SigCgt')
  process.send_signal(sig)
  output, _ = process.communicate(timeout=30)
  assert (process.returncode, output.strip()) == (
      status, f'{tool}: stopped by {sig.name}; {ONE_SHOT[tool]}'), output
  assert os.listdir(workdir) == []


_MAKING = r"""
import os, signal, sys, time
from p2p_jax import stopping
stopping.stop_at_once('demo', 'nothing written')
out, when, where = sys.argv[1:4]
if where == 'beside':  # made under another name beside out, then renamed to out
  partial, made = out + '.partial', ()
else:                  # made inside out (and its new parents), then moved out of it
  partial, made = os.path.join(out, '.partial-1'), stopping.missing_folders(out)
with stopping.temporary(partial, made=made):
  os.makedirs(os.path.join(partial, 'images'))
  with open(os.path.join(partial, 'images', 'a.png'), 'w') as f:
    f.write('x')
  if when == 'making':
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
  with stopping.writing(completes=True):
    if when == 'renaming':
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(0.5)
    if where == 'beside':
      os.rename(partial, out)
    else:
      os.rename(os.path.join(partial, 'images'), os.path.join(out, 'images'))
time.sleep(30)
"""


def _making(out, when: str, where: str):
  return subprocess.run([sys.executable, '-c', _MAKING, str(out), when, where], cwd=ROOT,
                        env=_env(), capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize('when', ['making', 'renaming'])
def test_a_stop_removes_an_output_being_made_and_waits_for_its_rename(tmp_path, when):
  """What evaluate, export and convert rely on (stopping.temporary, writing): a stop
  while an output is made under a temporary name removes it; one during the rename into
  place ends the command right after, the output whole."""
  out = tmp_path / 'results'
  done = _making(out, when, 'beside')
  why = 'nothing written' if when == 'making' else 'after its output was written'
  assert (done.returncode, done.stderr.strip()) == (143, f'demo: stopped by SIGTERM; {why}')
  assert os.listdir(tmp_path) == ([] if when == 'making' else ['results'])
  if when == 'renaming':
    assert (out / 'images' / 'a.png').read_text() == 'x'


@pytest.mark.parametrize('when', ['making', 'renaming'])
def test_a_stop_removes_the_folders_made_for_an_output_not_written(tmp_path, when):
  """evaluate and export make their output inside the folder they are given (and its
  parents, when new): a stop before the output is in place leaves none of those folders
  (nothing else of tmp_path's); one during the moves into place leaves the output."""
  (tmp_path / 'kept').mkdir()
  out = tmp_path / 'kept' / 'new' / 'results'
  done = _making(out, when, 'inside')
  assert done.returncode == 143, done.stderr
  if when == 'making':
    assert os.listdir(tmp_path) == ['kept'] and os.listdir(tmp_path / 'kept') == []
  else:
    assert os.listdir(out) == ['images'] and (out / 'images' / 'a.png').read_text() == 'x'


def test_a_failure_removes_only_the_empty_folders_it_made(tmp_path):
  """After an error, `temporary`'s `made` folders go when empty, innermost first: one that
  another writer filled meanwhile, and every folder above it, stays; after a success they
  all stay (they hold the output)."""
  out = tmp_path / 'a' / 'b' / 'out'
  made = stopping.missing_folders(out)
  assert made == (str(tmp_path / 'a'), str(tmp_path / 'a' / 'b'), str(out))
  with pytest.raises(OSError):
    with stopping.temporary(str(out / '.partial'), made=made):
      os.makedirs(out / '.partial')
      raise OSError(28, 'No space left on device')
  assert os.listdir(tmp_path) == []
  with pytest.raises(OSError):
    with stopping.temporary(str(out / '.partial'), made=made):
      os.makedirs(out / '.partial')
      (tmp_path / 'a' / 'other').write_text('not ours')
      raise OSError(28, 'No space left on device')
  assert sorted(os.listdir(tmp_path / 'a')) == ['other']
  with stopping.temporary(str(out / '.partial'), made=stopping.missing_folders(out)):
    os.makedirs(out / '.partial')
    (out / 'result.txt').write_text('done')
  assert os.listdir(out) == ['result.txt']


def test_the_trainers_stop_while_starting_removes_a_partial_download_too(tmp_path):
  """downloads.download's temporary file is a stopping.temporary: a stop while the trainer
  starts (stopping.exit_now, the dataset being downloaded) leaves no .part file."""
  part = tmp_path / '.facades.tar.gz.123.part'
  code = ('import sys; from p2p_jax import stopping\n'
          'with stopping.temporary(sys.argv[1]):\n'
          '  open(sys.argv[1], "wb").write(b"half")\n'
          '  stopping.exit_now("SIGTERM")\n')
  done = subprocess.run([sys.executable, '-c', code, str(part)], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=60, check=False)
  assert (done.returncode, done.stdout.strip()) == (stopping.EXIT_PREEMPTED, LINE)
  assert os.listdir(tmp_path) == []
