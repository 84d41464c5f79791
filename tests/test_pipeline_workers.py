"""Input-pipeline worker processes end with the process that started them, whatever ends it.

Ctrl-C in a terminal and some schedulers (systemd, SLURM) signal every process of the job,
workers included; a SIGKILL leaves them without a parent. Each test starts its own process
group (a script with one worker, or the real trainer on configs/tiny.py, whose config asks
for one worker), signals it as a terminal or a scheduler would, and checks that no worker
survives and that the trainer stopped as it does without workers.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

from conftest import ROOT
from p2p_jax import checkpointing, input_pipeline, workdirs
from test_batches import worker_pids
from test_kill_resume import Run, _env

SCRIPT = """
import time
import numpy as np
from p2p_jax import batches, jitter
source = [{'a': np.full((8, 8, 3), i, np.uint8), 'b': np.full((8, 8, 3), i, np.uint8),
           'name': b'%d' % i} for i in range(6)]
it = batches.batch_iterator((source,), jitter.Paired(jitter.Geometry(8)), batch_size=2,
                            train=True, seed=0, workers=1)
next(it)
print('ready', flush=True)
while True:
  next(it)
  time.sleep(0.01)
"""


def alive(pid: int) -> bool:
  """Whether `pid` runs (a zombie waiting for its parent to reap it has ended)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


def gone(pids, timeout=20.0) -> bool:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if not any(alive(p) for p in pids):
      return True
    time.sleep(0.1)
  return False


def start_script():
  """The script in a process group of its own, once its worker delivers; (process, pids)."""
  proc = subprocess.Popen([sys.executable, '-c', SCRIPT], cwd=ROOT, start_new_session=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'ready', proc.communicate(timeout=60)
  workers = worker_pids(proc.pid)
  assert len(workers) == 1, workers
  return proc, workers


def test_sigkill_of_the_parent_ends_its_workers():
  proc, workers = start_script()
  proc.kill()
  proc.wait(30)
  assert gone(workers), 'a worker outlived its parent (SIGKILL)'


def test_ctrl_c_and_sigterm_to_the_process_group_end_parent_and_workers():
  for signum in (signal.SIGINT, signal.SIGTERM):
    proc, workers = start_script()
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and gone(workers), (signum, err)
    # Only the parent reacted: a worker hit by the signal would add its own traceback.
    assert err.count('Traceback') <= 1 and 'spawn' not in err, err


class GroupRun(Run):
  """A `python -m p2p_jax.main` of configs/tiny.py (one worker) in a process group of its
  own, as a job started from a terminal; long enough never to finish by itself."""

  def __init__(self, workdir, data_dir):  # pylint: disable=super-init-not-called
    self.lines = []
    self.process = subprocess.Popen(
        [sys.executable, '-m', 'p2p_jax.main', '--config=configs/tiny.py',
         f'--workdir={workdir}', f'--config.data.data_dir={data_dir}',
         '--config.num_train_steps=10000', '--config.log_every_steps=1'],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()


def test_the_trainer_stops_at_a_step_with_workers_when_its_group_is_signalled(
    tmp_path, blue_marble_data_dir):
  workdir = tmp_path / 'run'
  for signum, status in ((signal.SIGINT, 0), (signal.SIGTERM, 75)):
    run = GroupRun(workdir, blue_marble_data_dir)
    assert run.wait_for(r'\] step \d+/'), run.output
    workers = worker_pids(run.process.pid)
    assert workers, run.output
    os.killpg(run.process.pid, signum)
    assert run.finish() == status, run.output
    assert re.search(rf'stopped by {signum.name} at step \d+ \((its checkpoint is written|'
                     r'no new step to save)\)', run.output), run.output
    assert 'Traceback' not in run.output and 'data_wait' in run.output, run.output
    assert gone(workers), f'{signum.name}: a worker outlived the trainer'
  config = workdirs.load_config(str(workdir))
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(str(workdir)),
                                  read_only=True) as ckpt:
    saved = ckpt.data_stream(ckpt.latest_step())
  assert saved == input_pipeline.stream_descriptor(config, 1)
  assert 'data stream' not in run.output  # resumed onto the same stream: nothing to say
