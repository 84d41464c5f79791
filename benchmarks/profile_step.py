"""Where a training step's time goes: a jax.profiler trace of it, summarised by kernel.

  PYTHONPATH=. python3 benchmarks/profile_step.py --batch 64                    # GPU
  PYTHONPATH=. python benchmarks/profile_step.py --batch 4 --conv-impl xla --top 20

Builds the step as benchmarks/train_step.py does, runs --warmup untimed steps, traces
--steps steps (perfetto trace under --trace-dir) and prints, per step: each traced thread's
busy time; on GPU the device kernels by total time, on CPU XLA's thunks (fusions, dots,
convolutions) by total time, with the number of calls; and on GPU which cuDNN convolution
calls the compiled program makes. A kernel's name says what runs, not which layer: the
compiled HLO (`--hlo FILE`) links them. The last line is JSON: busy ms per step by
category (convolution/GEMM kernels, copies/transposes, the rest).

This is how benchmarks/README.md's per-kernel numbers were found (the H100 profile of the
float32 batch-64 step, for one).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402

import train_step as bench  # noqa: E402  (benchmarks/train_step.py)

GEMM_LIKE = re.compile(r'conv|gemm|cutlass|xmma|cudnn|wgrad|dgrad|fprop|dot|ynn', re.I)
COPY_LIKE = re.compile(r'transpose|copy|memcpy', re.I)
# Host-side bookkeeping in a CPU trace, not work: the Python tracer's frames and the
# executor's waits and wrappers.
NOT_WORK = re.compile(r'^\$|ThunkExecutor|Await|PjRt|Execute|wait', re.I)


def load_trace(trace_dir: str) -> list:
  files = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
  if not files:
    raise SystemExit(f'no *.trace.json.gz under {trace_dir}: the profiler wrote no trace')
  events = json.load(gzip.open(max(files, key=os.path.getmtime)))
  return events['traceEvents'] if isinstance(events, dict) else events


def summarise(events: list, steps: int, top: int) -> dict:
  """Prints busy time per thread and the top kernels; returns ms per step by category."""
  names = [e for e in events if e.get('ph') == 'M']
  processes = {e['pid']: e['args'].get('name', '') for e in names
               if e.get('name') == 'process_name'}
  threads = {(e['pid'], e.get('tid')): e['args'].get('name', '') for e in names
             if e.get('name') == 'thread_name'}
  device = {p for p, n in processes.items() if '/device:' in n}
  work = [e for e in events if e.get('ph') == 'X']
  if device:  # GPU/TPU: the device's streams hold the kernels
    work = [e for e in work if e['pid'] in device
            and 'Stream' in threads.get((e['pid'], e['tid']), 'Stream')]
  else:  # CPU: XLA's thunks on its worker threads
    work = [e for e in work if threads.get((e['pid'], e['tid'])) != 'python'
            and not NOT_WORK.search(e['name'])]
  busy = collections.Counter()
  kernels = collections.defaultdict(lambda: [0.0, 0])
  for e in work:
    busy[threads.get((e['pid'], e['tid']), str(e['tid']))] += e.get('dur', 0)
    kernels[e['name']][0] += e.get('dur', 0)
    kernels[e['name']][1] += 1
  print('busy ms per step by thread:',
        {t: round(us / steps / 1e3, 2) for t, us in busy.most_common(8)})
  categories = collections.Counter()
  for name, (us, _) in kernels.items():
    kind = ('conv/gemm' if GEMM_LIKE.search(name) else
            'copy/transpose' if COPY_LIKE.search(name) else 'other')
    categories[kind] += us / steps / 1e3
  print(f'top {top} by time (ms per step, calls per step):')
  for name, (us, calls) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
    print(f'  {us / steps / 1e3:8.2f} ms {calls / steps:6.1f}x  {name[:150]}')
  return {k: round(v, 2) for k, v in categories.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--steps', type=int, default=2, help='traced steps')
  parser.add_argument('--warmup', type=int, default=3, help='untimed steps first')
  bench.add_model_args(parser)
  parser.add_argument('--trace-dir', default=None, help='default: a new temporary folder')
  parser.add_argument('--hlo', default=None, help='also write the compiled HLO text here')
  parser.add_argument('--top', type=int, default=30)
  args = parser.parse_args(argv)

  from p2p_jax import parallel

  config = bench.apply_common_args(bench.load_default_config(args.method), args)
  step, init = bench.build_step(config, args.image_size)
  dp = parallel.DataParallel(step, 'pmap', devices=jax.devices()[:1], donate=True)
  batch = bench.random_batch(config, args.batch, args.image_size)
  compiled = dp.lower(jax.eval_shape(init), batch).compile()
  hlo = compiled.as_text()
  if args.hlo:
    with open(args.hlo, 'w') as f:
      f.write(hlo)
  cudnn = collections.Counter(re.findall(r'custom_call_target="(__cudnn[^"]*)"', hlo))
  if cudnn:
    print('cuDNN calls in the compiled step:', dict(cudnn))

  holder = {'state': dp.put_state(jax.jit(init)())}

  def one_step():
    holder['state'], metrics = dp(holder['state'], batch)
    jax.block_until_ready(metrics)

  times = bench.timed_calls(one_step, args.warmup, 3)
  print(f'{jax.devices()[0].device_kind}, {args.dtype}, batch {args.batch}, '
        f'conv_impl {config.compute.conv_impl}: {min(times) * 1e3:.1f} ms per step (best of 3)')
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix='p2p_profile_')
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      one_step()
  categories = summarise(load_trace(trace_dir), args.steps, args.top)
  print(json.dumps({'bench': 'profile_step', 'batch': args.batch, 'dtype': args.dtype,
                    'conv_impl': config.compute.conv_impl, 'device': jax.devices()[0].device_kind,
                    'best_ms_per_step': round(min(times) * 1e3, 2),
                    'busy_ms_per_step': categories, 'trace_dir': trace_dir}))


if __name__ == '__main__':
  main()
