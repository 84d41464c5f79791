"""One process of a multi-host training run, launched by tests/test_multihost.py.

Usage (--num-processes, --process-id and --port only for a multi-process run):
  python tests/multihost_worker.py --config CONFIG.json --workdir DIR --out OUT.npz \
      --local-devices 2 --num-processes 2 --process-id 0 --port 12345 [--xla-flags ...]

Sets up the fake CPU devices before JAX is imported, starts the distributed runtime the way
the trainer does (config.distributed=True and the JAX_* environment variables of
p2p_jax.parallel), and trains on a deterministic synthetic stream in which each process gets
its rows of the global batch. Writes OUT.npz (final state, as this process sees it) and
OUT.json (the metrics handed to each checkpoint save, and what it wrote into the workdir
outside checkpoints/, recorded with an audit hook).
"""

import argparse
import json
import os
import sys


def parse_args():
  parser = argparse.ArgumentParser()
  parser.add_argument('--config', required=True, help='config as JSON (ConfigDict.to_json)')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True, help='.npz of the final state')
  parser.add_argument('--local-devices', type=int, required=True)
  parser.add_argument('--num-processes', type=int, default=1)
  parser.add_argument('--process-id', type=int, default=0)
  parser.add_argument('--port', type=int, default=0)
  parser.add_argument('--num-examples', type=int, default=16, help='size of an epoch')
  parser.add_argument('--xla-flags', default='', help='more XLA_FLAGS')
  return parser.parse_args()


ARGS = parse_args()
# Before JAX is imported: these fix the device count (an inherited value must not win).
os.environ['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={ARGS.local_devices} '
                           f'{ARGS.xla_flags}').strip()
os.environ['JAX_PLATFORMS'] = 'cpu'
if ARGS.num_processes > 1:
  os.environ['JAX_COORDINATOR_ADDRESS'] = f'127.0.0.1:{ARGS.port}'
  os.environ['JAX_NUM_PROCESSES'] = str(ARGS.num_processes)
  os.environ['JAX_PROCESS_ID'] = str(ARGS.process_id)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from p2p_jax import checkpointing, config_schema, train  # pylint: disable=wrong-import-position

WRITE_EVENTS = ('os.mkdir', 'os.rename', 'os.replace', 'os.remove', 'shutil.rmtree')


def global_batch(index: int, batch_size: int, size: int, seed: int) -> dict:
  """The global batch number `index` of a run: the same on every process."""
  rng = np.random.default_rng([seed, index])
  shape = (batch_size, size, size, 3)
  return {'input': rng.uniform(-1, 1, shape).astype(np.float32),
          'target': rng.uniform(-1, 1, shape).astype(np.float32)}


def process_rows(batch: dict, num_processes: int, process_id: int) -> dict:
  """This process's contiguous rows, as each process reads its own share of the data."""
  n = len(batch['input']) // num_processes
  return {k: v[process_id * n:(process_id + 1) * n] for k, v in batch.items()}


def record_writes(workdir: str) -> list:
  """Audit hook: paths under workdir (checkpoints/ excepted) this process creates or changes."""
  root = os.path.realpath(workdir)
  skip = os.path.join(root, 'checkpoints')
  written = []

  def inside(path) -> bool:
    try:
      path = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
      return False
    return (path == root or path.startswith(root + os.sep)) and not (
        path == skip or path.startswith(skip + os.sep))

  def hook(event, args):
    if event == 'open':
      path, mode, flags = args
      writes = (mode and any(c in mode for c in 'wax+')) or (
          flags and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
      if writes and isinstance(path, (str, bytes)) and inside(path):
        written.append(os.fsdecode(path))
    elif event in WRITE_EVENTS:  # the paths among the arguments (both, for a rename)
      written.extend(os.fsdecode(a) for a in args[:2]
                     if isinstance(a, (str, bytes)) and inside(a))

  sys.addaudithook(hook)
  return written


def main():
  with open(ARGS.config) as f:
    config = config_schema.from_dict(json.load(f))
  config.distributed = ARGS.num_processes > 1
  n, p = ARGS.num_processes, ARGS.process_id
  size = config.data.crop_size

  def train_batches(start_batch):
    index = start_batch
    while True:
      yield process_rows(global_batch(index, config.batch_size, size, config.seed), n, p)
      index += 1

  def eval_batches():
    # num_eval_examples images in all: each process's share is its rows of them.
    yield process_rows(global_batch(0, config.num_eval_examples, size, config.seed + 1),
                       n, p)

  saved_metrics = {}
  save = checkpointing.Checkpointer.save

  def recording_save(self, step, state, metrics=None):
    saved_metrics[int(step)] = dict(metrics or {})
    return save(self, step, state, metrics)

  checkpointing.Checkpointer.save = recording_save
  written = record_writes(ARGS.workdir)
  state = train.train_and_evaluate(config, ARGS.workdir, train_batches=train_batches,
                                   eval_batches=eval_batches,
                                   num_train_examples=ARGS.num_examples)
  assert jax.process_count() == n and jax.device_count() == n * ARGS.local_devices, (
      jax.process_count(), jax.device_count())
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  arrays = {jax.tree_util.keystr(path, simple=True, separator='/'): np.asarray(x)
            for path, x in leaves}
  np.savez(ARGS.out, **arrays)
  with open(os.path.splitext(ARGS.out)[0] + '.json', 'w') as f:
    json.dump({'process_index': jax.process_index(), 'process_count': jax.process_count(),
               'saved_metrics': saved_metrics, 'written': sorted(set(written))}, f, indent=1)


if __name__ == '__main__':
  main()
