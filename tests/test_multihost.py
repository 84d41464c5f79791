"""Multi-host training: 2 processes x 2 CPU devices train exactly as 1 process x 4 devices.

Each run is a subprocess (tests/multihost_worker.py): the device count is fixed when JAX
starts, and jax.distributed needs one process per host. The two processes of a run talk
through jax.distributed (gloo collectives) on a free local port and share one workdir, as
hosts share a file system. The three runs (reference, shard_map, pmap: five processes)
start together and take about 110 s of CPU time, most of it imports and compilation: about
a minute on 2 idle cores.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import tiny_config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'multihost_worker.py')
TIMEOUT_S = 240
STEPS = 3
# Same global batch, same device order, same dropout keys: only the order of the float sums
# in the cross-device means differs (gloo across processes vs. in-process). Compared:
# * Adam's first moments (averages of the global gradients), relative to each leaf's largest
#   value: measured <= 5e-6. Giving the processes each other's rows (a wrong device order,
#   so other dropout keys) changes them by 100% and more.
# * every leaf of the state, absolute: measured <= 5e-6. Adam turns tiny gradient noise into
#   up to a whole step (lr = 2e-4) where a gradient is near 0, so this bound is looser.
MU_RTOL = 1e-4
ATOL = 1e-4
# XLA:CPU spends ~3 s of LLVM optimisation per jax.random.normal call in the init (35 s for
# the tiny model); unoptimised code compiles 5-10x faster and is fast enough for 3 steps at
# 64 px. Every run uses the same flags, so the comparison is unaffected.
XLA_FLAGS = '--xla_backend_optimization_level=0'


def _config(mapping: str):
  # unet_64 is the smallest U-Net with a dropout layer; with unet_32 (none) the result would
  # not depend on which device trains on which example, and the test could not see it.
  config = tiny_config('unet_64')
  config.data.load_size, config.data.crop_size = 72, 64
  config.compute.mapping = mapping
  config.batch_size = 4           # one example per device in both layouts
  config.num_train_steps = STEPS
  config.optim.schedule = 'constant'
  config.log_every_steps = 1
  # One validation and one save, at the last step (a save costs seconds; a validation
  # before it would be saved too, being the best so far).
  config.eval_every_steps = STEPS
  config.sample_every_steps = STEPS
  config.checkpoint_every_steps = 100
  config.num_eval_examples = 4
  config.keep_checkpoints = 2
  # Running averages, no dropout: validation scores do not depend on how images are numbered
  # across processes, so they can be compared with the single-process run.
  config.inference_mode = 'eval'
  return config


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env():
  # The worker sets the device count and the distributed runtime's variables itself; other
  # settings (e.g. the test session's compilation cache) pass on.
  drop = {'XLA_FLAGS', 'JAX_PLATFORMS', 'JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
          'JAX_PROCESS_ID'}
  env = {k: v for k, v in os.environ.items() if k not in drop}
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  return env


class _Run:
  """One training run: `num_processes` workers started together."""

  def __init__(self, base, name: str, mapping: str, local_devices: int,
               num_processes: int):
    self.name, self.workdir = name, str(base / name)
    os.makedirs(self.workdir)
    config_path = str(base / f'{name}_config.json')
    with open(config_path, 'w') as f:
      f.write(_config(mapping).to_json())
    port = _free_port()
    self.procs, self.outs, self.logs = [], [], []
    for p in range(num_processes):
      out, log = str(base / f'{name}_p{p}.npz'), str(base / f'{name}_p{p}.log')
      cmd = [sys.executable, WORKER, '--config', config_path, '--workdir', self.workdir,
             '--out', out, '--local-devices', str(local_devices),
             '--num-processes', str(num_processes), '--process-id', str(p),
             '--port', str(port), f'--xla-flags={XLA_FLAGS}']
      with open(log, 'w') as log_file:
        self.procs.append(subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                           env=_env()))
      self.outs.append(out)
      self.logs.append(log)

  def kill(self):
    for proc in self.procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()

  def results(self):
    """[(final state arrays, report)] per process; fails with the workers' output."""
    self.kill()
    bad = [(p, proc.returncode) for p, proc in enumerate(self.procs) if proc.returncode != 0]
    if bad:
      tails = []
      for p, rc in bad:
        with open(self.logs[p]) as f:
          tails.append(f'--- {self.name} process {p} (exit {rc}):\n' + f.read()[-4000:])
      pytest.fail(f'{self.name}: worker(s) failed\n' + '\n'.join(tails))
    out = []
    for path in self.outs:
      with np.load(path) as arrays, open(os.path.splitext(path)[0] + '.json') as f:
        out.append(({k: arrays[k] for k in arrays.files}, json.load(f)))
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """{'reference', 'shard_map', 'pmap'} -> (workdir, per-process results)."""
  base = tmp_path_factory.mktemp('multihost')
  started = [_Run(base, 'reference', 'shard_map', local_devices=4, num_processes=1),
             _Run(base, 'shard_map', 'shard_map', local_devices=2, num_processes=2),
             _Run(base, 'pmap', 'pmap', local_devices=2, num_processes=2)]
  procs = [proc for run in started for proc in run.procs]
  deadline = time.monotonic() + TIMEOUT_S
  # Until all are done; a failed worker leaves its partner waiting in a collective, so stop
  # everything soon after the first failure.
  while time.monotonic() < deadline and any(p.poll() is None for p in procs):
    if any(p.poll() not in (None, 0) for p in procs):
      deadline = min(deadline, time.monotonic() + 5)
    time.sleep(0.5)
  try:
    return {run.name: (run.workdir, run.results()) for run in started}
  finally:
    for run in started:
      run.kill()


def _max_diff(a: dict, b: dict, relative: bool = False, only: str = '') -> float:
  """Largest |a - b| over the leaves whose name has `only`, divided by max |b| of the leaf if
  `relative`. Leaves: the flattened TrainState (step, params, batch_stats, Adam, key)."""
  assert sorted(a) == sorted(b)
  worst = 0.0
  for k in (k for k in a if only in k):
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    if x.size:
      scale = max(float(np.max(np.abs(y))), 1e-30) if relative else 1.0
      worst = max(worst, float(np.max(np.abs(x - y))) / scale)
  return worst


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_two_processes_train_as_one_process_with_all_devices(runs, mode):
  (ref, ref_report), = runs['reference'][1]
  (p0, r0), (p1, r1) = runs[mode][1]
  assert (r0['process_index'], r1['process_index']) == (0, 1)
  assert r0['process_count'] == 2 and ref_report['process_count'] == 1
  assert int(p0['step']) == int(ref['step']) == STEPS
  # Both processes hold the same replicated state, bit for bit.
  assert _max_diff(p0, p1) == 0.0
  mu = _max_diff(p0, ref, relative=True, only='/mu/')
  assert mu < MU_RTOL, f"2 processes' Adam moments differ from 1 process's by {mu:.2e}"
  diff = _max_diff(p0, ref)
  assert diff < ATOL, f'2 processes differ from 1 process by {diff:.2e}'


@pytest.mark.parametrize('mode', ['shard_map', 'pmap'])
def test_validation_scores_agree_across_processes(runs, mode):
  """Checkpoint ranking (best val_l1) must be decided identically on every process."""
  (_, ref_report), = runs['reference'][1]
  (_, r0), (_, r1) = runs[mode][1]
  assert sorted(r0['saved_metrics']) == sorted(ref_report['saved_metrics']) == [str(STEPS)]
  assert r0['saved_metrics'] == r1['saved_metrics']
  for step, ref_metrics in ref_report['saved_metrics'].items():
    assert set(r0['saved_metrics'][step]) == {'val_l1', 'val_psnr'}
    np.testing.assert_allclose(r0['saved_metrics'][step]['val_l1'], ref_metrics['val_l1'],
                               rtol=1e-5)


def test_only_process_zero_writes_logs_samples_and_config(runs):
  workdir, ((_, r0), (_, r1)) = runs['shard_map']
  assert r1['written'] == []
  names = {os.path.relpath(p, workdir).split(os.sep)[0] for p in r0['written']}
  assert {'config.json', 'samples'} <= names, r0['written']
  assert os.listdir(os.path.join(workdir, 'samples'))


def test_checkpoint_of_two_processes_restores_in_one(runs):
  from p2p_jax import workdirs  # pylint: disable=import-outside-toplevel
  workdir, ((p0, _), _) = runs['shard_map']
  step, variables = workdirs.load_generator_variables(workdir, 'latest')
  assert step == STEPS
  flat = {}
  for group, tree in variables.items():
    stack = [(f'g/{group}', tree)]
    while stack:
      prefix, node = stack.pop()
      for key, value in node.items():
        if isinstance(value, dict):
          stack.append((f'{prefix}/{key}', value))
        else:
          flat[f'{prefix}/{key}'] = np.asarray(value)
  assert flat and set(flat) <= set(p0)
  assert _max_diff(flat, {k: p0[k] for k in flat}) == 0.0
