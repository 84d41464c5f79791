"""Issue 7's accelerator sweep in one process: train and inference at several batch sizes.

  PYTHONPATH=. python3 benchmarks/gpu_sweep.py --out gpu_sweep.jsonl --deadline-s 400

Runs benchmarks/train_step.py and benchmarks/inference.py in this process, case after case
(one JAX start-up instead of ten), most wanted first, and appends one JSON line per case to
--out as soon as it is measured, so a run cut short still leaves what it finished. A case
that fails is recorded with its error and the sweep goes on; no new case starts after
--deadline-s. Each line gets `peak_fraction`: the model's FLOP/s (`model_tflop_s`, counted
by benchmarks/flops.py) over the device's dense peak for the arithmetic used (float32
convs run on TF32 tensor cores on NVIDIA GPUs from Ampere on, JAX's default precision;
bfloat16 on bf16 tensor cores).

`device_peak_mb` is the process's peak so far (earlier cases included); `temp_mb` and
`argument_mb` are the executable's own.
"""

import argparse
import gc
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import jax  # noqa: E402

import inference as inference_bench  # noqa: E402  (benchmarks/inference.py)
import train_step as train_bench  # noqa: E402  (benchmarks/train_step.py)

# Dense (no sparsity) peak TFLOP/s by the arithmetic the tensor cores run; vendor figures.
PEAK_TFLOPS = {
    'H100 PCIe': {'bfloat16': 756.0, 'tf32': 378.0},
    'H100': {'bfloat16': 989.4, 'tf32': 494.7},  # SXM (80GB HBM3)
    'H200': {'bfloat16': 989.4, 'tf32': 494.7},
    'A100': {'bfloat16': 312.0, 'tf32': 156.0},
}

# (benchmark, dtype, batch, conv_impl or None for the config's 'auto'), most wanted first: a
# run cut short keeps the informative ones. The 'xla_adjoint' cases are the open question
# of benchmarks/README.md (GPU section): whether the transposed convs' kernel gradients as
# weight-gradient kernels beat XLA's own form (a third of the float32 step at batch 64).
CASES = [
    ('train', 'float32', 64, None), ('train', 'float32', 64, 'xla_adjoint'),
    ('train', 'bfloat16', 64, None), ('train', 'bfloat16', 64, 'xla_adjoint'),
    ('train', 'float32', 16, None), ('train', 'bfloat16', 16, None),
    ('inference', 'float32', 1, None), ('inference', 'float32', 16, None),
    ('train', 'float32', 1, None), ('train', 'bfloat16', 1, None),
    ('train', 'float32', 16, 'xla_adjoint'),
    ('inference', 'bfloat16', 1, None), ('inference', 'bfloat16', 16, None),
]


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The device's dense peak for `dtype` compute (float32 counted as TF32); None if unknown."""
  for name, peaks in PEAK_TFLOPS.items():  # 'H100 PCIe' is tried before 'H100'
    if name in device_kind:
      return peaks['bfloat16' if dtype == 'bfloat16' else 'tf32']
  return None


def run_case(bench: str, dtype: str, batch: int, impl: str | None, args,
             parallel: str = 'pmap') -> dict:
  """One benchmark run in this process; its JSON result with the fraction of peak added."""
  common = ['--batch', str(batch), '--dtype', dtype, '--steps', str(args.steps),
            '--warmup', str(args.warmup), '--image-size', str(args.image_size),
            '--generator', args.generator]
  impl = impl or args.conv_impl
  if impl:
    common += ['--conv-impl', impl]
  if bench == 'train':
    result = train_bench.main(common + ['--parallel', parallel])
  else:
    result = inference_bench.main(common)
  peak = peak_tflops(result['device'], dtype)
  result['peak_tflops'] = peak
  result['peak_fraction'] = (None if peak is None
                             else round(result['model_tflop_s'] / peak, 4))
  return result


def parse_case(text: str) -> tuple:
  """'train:float32:64' or 'train:float32:64:xla_adjoint' -> a CASES entry."""
  parts = text.split(':')
  if (len(parts) not in (3, 4) or parts[0] not in ('train', 'inference')
      or parts[1] not in ('float32', 'bfloat16') or not parts[2].isdigit()):
    raise SystemExit(f'--cases: want train|inference:float32|bfloat16:BATCH[:CONV_IMPL], '
                     f'got {text!r}')
  return parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else None


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='gpu_sweep.jsonl', help='JSON lines, appended')
  parser.add_argument('--deadline-s', type=float, default=400.0,
                      help='start no new case after this many seconds')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--image-size', type=int, default=256)
  parser.add_argument('--generator', default='unet_256')
  parser.add_argument('--conv-impl', default=None,
                      help="for the cases that name none (default: the config's 'auto')")
  parser.add_argument('--cases', default=None,
                      help='comma-separated bench:dtype:batch[:conv_impl] '
                           '(default: the issue 7 sweep, CASES)')
  args = parser.parse_args(argv)
  cases = CASES if not args.cases else [parse_case(c) for c in args.cases.split(',')]
  # The trainer's default; if the pmap form fails on this jax, the shard_map form (the
  # same step under jit) is measured instead and the line says which ran.
  parallel = 'pmap'

  t0 = time.monotonic()
  print(json.dumps({'sweep': 'start', 'backend': jax.default_backend(),
                    'devices': [d.device_kind for d in jax.devices()],
                    'jax': jax.__version__}), flush=True)
  for bench, dtype, batch, impl in cases:
    elapsed = time.monotonic() - t0
    line = {'bench': 'train_step' if bench == 'train' else bench, 'dtype': dtype,
            'batch': batch, 'conv_impl': impl or args.conv_impl or 'auto'}
    if elapsed > args.deadline_s:
      line['skipped'] = f'deadline: {elapsed:.0f} s > {args.deadline_s:.0f} s'
    else:
      try:
        line = run_case(bench, dtype, batch, impl, args, parallel)
      except Exception as e:  # record it and go on: one broken case must not cost the rest
        traceback.print_exc()
        line['error'] = f'{type(e).__name__}: {e}'[:500]
        if bench == 'train' and parallel == 'pmap':
          parallel = 'shard_map'
          try:
            line = {**run_case(bench, dtype, batch, impl, args, parallel),
                    'pmap_error': line['error']}
          except Exception as e2:
            traceback.print_exc()
            line['shard_map_error'] = f'{type(e2).__name__}: {e2}'[:500]
    line['sweep_elapsed_s'] = round(time.monotonic() - t0, 1)
    with open(args.out, 'a') as f:
      f.write(json.dumps(line) + '\n')
    print('SWEEP ' + json.dumps(line), flush=True)
    jax.clear_caches()  # drop the executables (and their device buffers) of the last case
    gc.collect()


if __name__ == '__main__':
  main()
