"""Kill and resume a real `python -m p2p_jax.main`: the end state is bit-identical.

One uninterrupted run of configs/tiny.py (8 steps on the embedded Blue Marble tiles,
validating, sampling and saving every 2 steps) is the reference. Another workdir is trained
by runs that each get SIGKILL or SIGTERM at a chosen moment, each resuming the last, then a
run that finishes; every leaf of its last checkpoint must equal the reference's, bit for
bit. The moments come from the run's own output (flushed lines), so they are what they
say: during a step (just after the line of the step before), during a validation (just
after the line of an even step), during an asynchronous save (just after a validation's
line), the last one being the final save; a seeded shuffle assigns them to the signals and
to steps 2, 4, 6, 8, and a seeded jitter of up to 50 ms moves each, so a failure
reproduces. SIGTERM must end a run with exit status 75 (or 0 once it has finished),
saying at which step it stopped, with that step's checkpoint complete and nothing
unfinished left; SIGKILL leaves at worst an unfinished save and a stale lock, which the
next run removes and takes over.

Economy (the suite runs on 2 cores): the runs share the session's compilation cache
(tests/conftest.py), so only the first two compile; the reference runs beside the first
interrupted run; four kills, not dozens. Most of each run's time is importing TensorFlow
and JAX.
"""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import jax

from conftest import ROOT
from p2p_jax import checkpointing, config_schema, networks, state as state_lib, workdirs
from test_train import assert_bit_equal

STEPS = 8
SEED = 16  # of the kill moments: a failure reproduces


def _env():
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  # One device (the tiny config's batch of 2); the test session's other XLA flags stay.
  env['XLA_FLAGS'] = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                            env.get('XLA_FLAGS', '')).strip()
  return env


class Run:
  """A `python -m p2p_jax.main` process whose output is collected line by line."""

  def __init__(self, workdir, data_dir):
    self.lines = []
    self.process = subprocess.Popen(
        [sys.executable, '-m', 'p2p_jax.main', '--config=configs/tiny.py',
         f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
         f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1'],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.process.stdout:
      self.lines.append(line.rstrip())

  def wait_for(self, pattern: str, timeout: float = 300) -> bool:
    """True once a line matches `pattern`; False if the process ended without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if any(re.search(pattern, line) for line in list(self.lines)):
        return True
      if self.process.poll() is not None and not self._reader.is_alive():
        return False
      time.sleep(0.005)
    raise TimeoutError(f'no line matching {pattern!r}:\n{self.output}')

  def finish(self, timeout=300) -> int:
    rc = self.process.wait(timeout)
    self._reader.join(timeout)
    return rc

  @property
  def output(self) -> str:
    return '\n'.join(self.lines)


# Where in step k a signal lands: the line it waits for (after which the moment begins).
MOMENTS = {
    'step': lambda k: rf'\] step {k - 1}/',            # step k runs after step k-1's line
    'validation': lambda k: rf'\] step {k}/',         # even k: validation follows its line
    'save': lambda k: rf'validation at step {k}:',     # then the asynchronous save of k
}


def _final_state(workdir):
  """The whole TrainState of the newest checkpoint, restored as training would."""
  config = workdirs.load_config(str(workdir))
  g, d = networks.create_generator(config), networks.create_discriminator(config)
  tx_g, tx_d, _ = state_lib.create_optimizers(config, 1)
  abstract = jax.eval_shape(lambda: state_lib.create_train_state(
      jax.random.PRNGKey(0), g, d, tx_g, tx_d, config.data.crop_size))
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(str(workdir)),
                                  read_only=True) as ckpt:
    assert ckpt.latest_step() == STEPS
    return ckpt.restore(abstract)


def test_sigkill_and_sigterm_at_chosen_moments_then_resume_is_bit_identical(
    tmp_path, blue_marble_data_dir):
  # The reference runs beside the first interrupted run (the second core).
  reference = Run(tmp_path / 'reference', blue_marble_data_dir)

  rng = random.Random(SEED)
  signals = [signal.SIGKILL, signal.SIGTERM]
  rng.shuffle(signals)
  plan = [('save', signal.SIGKILL), ('save', signal.SIGTERM),
          ('validation', signals[0]), ('step', signals[1])]
  rng.shuffle(plan)
  workdir = tmp_path / 'interrupted'
  happened, killed = [], False
  for (moment, signum), step in zip(plan, (2, 4, 6, STEPS)):
    run = Run(workdir, blue_marble_data_dir)
    if run.wait_for(MOMENTS[moment](step)):
      if killed:                          # the lock a SIGKILL left behind
        assert 'Taking over the stale lock' in run.output, run.output
      time.sleep(rng.uniform(0, 0.05))
      run.process.send_signal(signum)
    rc = run.finish()
    happened.append((signum.name, f'{moment} of step {step}', rc))
    killed = rc == -signal.SIGKILL
    if rc == 0:
      continue                            # it had finished before the signal came
    if signum == signal.SIGKILL:
      assert killed, run.output
      continue
    stopped = re.search(r'stopped by SIGTERM at step (\d+) \(its checkpoint is written\)',
                        run.output)
    assert rc == 75 and stopped, (happened, run.output)
    with checkpointing.Checkpointer(workdirs.checkpoint_dir(str(workdir)),
                                    read_only=True) as ckpt:
      assert ckpt.latest_step() == int(stopped.group(1)), happened
    assert not [p for p in os.listdir(workdir / 'checkpoints') if 'tmp' in p], happened

  final = Run(workdir, blue_marble_data_dir)
  assert final.finish() == 0, (happened, final.output)
  assert reference.finish() == 0, reference.output
  print('signals (name, moment, exit status):', *happened, sep='\n  ')
  assert_bit_equal(_final_state(workdir), _final_state(tmp_path / 'reference'))
