"""The real trainer, end to end: start-up time, images/s and peak memory of `p2p_jax.main`.

  PYTHONPATH=. python benchmarks/trainer.py                      # 256 px, batch 1, 300 steps
  PYTHONPATH=. python benchmarks/trainer.py --batch 4 --steps 120
  PYTHONPATH=. python benchmarks/trainer.py --size 128 --steps 50 --generator unet_128
  PYTHONPATH=. python benchmarks/trainer.py --workers 1 --once --steps 60 --log_every 10

Runs `python -m p2p_jax.main` as a user does (the paper's networks on the embedded Blue
Marble tiles through the TFDS pipeline, validation and a checkpoint at the end), twice in
one workdir: the first start with an empty compilation cache, the second a resume of the
same configuration with the cache the first one filled (--once: the first only). The
trainer's memory is sampled every 0.1 s (VmRSS of the process, and the sums of VmRSS and of
PSS over the process and its input-pipeline workers) and tagged with the phase its output
says it is in. --workers sets config.data.workers (default: the config's, -1).
Prints one JSON line:
  first_start_s, second_start_s   seconds from the command to the end of the first step
  trace_s_first/second            of those, tracing and lowering the step and the init
                                  (Python: JAX caches no trace across processes)
  compile_s_first/second          of those, compiling (or loading compiled programs)
  img_per_s                       median of the trainer's own logged rates, first run,
                                  after its first log interval (steady state)
  peak_rss_mb                     the process's peak (getrusage of the child)
  rss_mb_by_phase                 highest sample in each phase: 'start-up' (imports, data,
                                  compilation, init), 'training', 'validation', 'saving'
  tree_rss_mb, tree_pss_mb        peak sums over the trainer and its worker processes
                                  (RSS counts pages they share once per process; PSS
                                  splits them), and `workers`, how many there were
  data_wait                       median of the trainer's logged share of time spent
                                  waiting for batches, after its first log interval
Compare img_per_s with benchmarks/train_step.py's bare step at the same batch.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb(pid: int) -> float | None:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / 1024
  except OSError:
    return None
  return None


def _descendants(pid: int) -> list[int]:
  """`pid`'s children and their children (the trainer's input-pipeline workers)."""
  parents = {}
  for entry in os.listdir('/proc'):
    try:
      with open(f'/proc/{entry}/stat') as f:
        parents.setdefault(int(f.read().rsplit(')', 1)[1].split()[1]), []).append(int(entry))
    except (OSError, ValueError):
      continue
  found, todo = [], [pid]
  while todo:
    kids = parents.get(todo.pop(), [])
    found += kids
    todo += kids
  return found


def _pss_mb(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/smaps_rollup') as f:
      for line in f:
        if line.startswith('Pss:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def run_trainer(args, workdir, data_dir, cache, steps) -> dict:
  """One `python -m p2p_jax.main` run; its timed output lines and memory samples."""
  overrides = {
      'data.dataset': 'blue_marble', 'data.direction': 'AtoB', 'data.eval_split': 'test',
      'data.data_dir': data_dir, 'data.load_size': args.size + args.size // 8,
      'data.crop_size': args.size, 'model.generator': args.generator,
      'batch_size': args.batch, 'num_train_steps': steps, 'log_every_steps': args.log_every,
      'eval_every_steps': steps, 'sample_every_steps': steps,
      'checkpoint_every_steps': steps, 'num_eval_examples': 8,
  }
  if args.workers is not None:
    overrides['data.workers'] = args.workers
  cmd = [sys.executable, '-m', 'p2p_jax.main', f'--config={REPO}/configs/default.py',
         f'--workdir={workdir}', f'--compilation_cache={cache}',
         *[f'--config.{k}={v}' for k, v in overrides.items()]]
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=REPO)
  phase, samples, lines, tree = ['start-up'], [], [], {'rss': 0.0, 'pss': 0.0, 'workers': 0}

  def sample():
    while proc.poll() is None:
      rss = _rss_mb(proc.pid)
      if rss is not None:
        samples.append((phase[0], rss))
        kids = _descendants(proc.pid)
        tree['rss'] = max(tree['rss'], rss + sum(_rss_mb(k) or 0.0 for k in kids))
        tree['pss'] = max(tree['pss'], sum(_pss_mb(p) for p in [proc.pid, *kids]))
        tree['workers'] = max(tree['workers'], len(kids))
      time.sleep(0.1)
  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  for line in proc.stdout:
    lines.append((time.perf_counter() - start, line.rstrip()))
    if 'first step done' in line or line.startswith('['):
      phase[0] = 'training'
    if line.startswith('['):
      if re.search(rf'step {steps}/', line):
        phase[0] = 'validation'
    if 'validation at step' in line:
      phase[0] = 'saving'
  proc.wait()
  sampler.join()
  if proc.returncode:
    sys.exit('\n'.join(l for _, l in lines[-20:]) + f'\ntrainer failed ({proc.returncode})')
  by_phase = {}
  for name, rss in samples:
    by_phase[name] = max(by_phase.get(name, 0.0), rss)
  waits = []
  with open(os.path.join(workdir, 'scalars.jsonl')) as f:
    waits = [row['data_wait'] for row in map(json.loads, f) if 'data_wait' in row]
  return {'lines': lines, 'rss_by_phase': {k: round(v) for k, v in by_phase.items()},
          'tree_rss_mb': round(tree['rss']), 'tree_pss_mb': round(tree['pss']),
          'processes': tree['workers'],
          'data_wait': statistics.median(waits[1:] or waits) if waits else None}


def parse(run) -> dict:
  first = [l for _, l in run['lines'] if 'first step done' in l]
  if not first:
    return {}
  start_s, trace_s, compile_s = map(float, re.findall(r'([\d.]+) s\b', first[0])[:3])
  rates = [float(m) for _, l in run['lines'] for m in re.findall(r'([\d.]+) img/s', l)]
  return {'start_s': start_s, 'trace_s': trace_s, 'compile_s': compile_s, 'rates': rates}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--generator', default='unet_256')
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--log_every', type=int, default=25)
  parser.add_argument('--workers', type=int, default=None,
                      help='config.data.workers (default: the config\'s, -1)')
  parser.add_argument('--once', action='store_true', help='the first start only')
  parser.add_argument('--keep', default=None, help='keep the workdir here (default: a '
                      'temporary folder, deleted)')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory(prefix='p2p_trainer_bench.') as tmp:
    workdir = args.keep or os.path.join(tmp, 'run')
    data_dir, cache = os.path.join(tmp, 'tfds'), os.path.join(tmp, 'cache')
    first = run_trainer(args, workdir, data_dir, cache, args.steps)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    second = None if args.once else run_trainer(args, workdir, data_dir, cache,
                                                 args.steps + 2 * args.log_every)
    a, b = parse(first), parse(second) if second else {}
  rates = a['rates'][1:] or a['rates']
  result = {
      'bench': 'trainer', 'batch': args.batch, 'image_size': args.size,
      'generator': args.generator, 'steps': args.steps,
      'first_start_s': a['start_s'], 'trace_s_first': a['trace_s'],
      'compile_s_first': a['compile_s'],
      'second_start_s': b.get('start_s'), 'trace_s_second': b.get('trace_s'),
      'compile_s_second': b.get('compile_s'),
      'img_per_s': round(statistics.median(rates), 3),
      'peak_rss_mb': round(before),
      'tree_rss_mb': first['tree_rss_mb'], 'tree_pss_mb': first['tree_pss_mb'],
      'workers': args.workers, 'child_processes': first['processes'],
      'data_wait': first['data_wait'],
      'rss_mb_by_phase': first['rss_by_phase'],
      'rss_mb_by_phase_second_start': second and second['rss_by_phase'],
      'cpu_count': os.cpu_count(),
  }
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main()
