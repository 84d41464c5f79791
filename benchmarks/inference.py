"""Benchmark of generator inference: images per second of G(x) at 256x256.

  PYTHONPATH=. python benchmarks/inference.py --batch 1
  PYTHONPATH=. python benchmarks/inference.py --batch 16 --mode eval --conv-impl xla

--mode paper: the paper's test-time setting (dropout on, BatchNorm with the statistics of
the test batch; the batch_stats update is discarded). --mode eval: running averages, no
dropout. The generator is built by networks.create_generator(config) from
configs/default.py (unet_256, batch norm) with random weights, under jax.jit on one device.
Prints one JSON line. Runs without TensorFlow and ml_collections (see train_step.py).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

if __name__ == '__main__':  # as `python -m p2p_jax.main` does (see p2p_jax/host_memory.py)
  from p2p_jax import host_memory
  host_memory.reexec_with_hugepage_malloc()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import flops as flops_lib  # noqa: E402  (benchmarks/flops.py)
import train_step as bench  # noqa: E402  (benchmarks/train_step.py: shared helpers)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--steps', type=int, default=10, help='timed calls')
  parser.add_argument('--warmup', type=int, default=3, help='untimed calls first')
  parser.add_argument('--mode', default='paper', choices=['paper', 'eval'])
  bench.add_model_args(parser)
  args = parser.parse_args(argv)

  from p2p_jax import host_memory, networks

  config = bench.apply_common_args(bench.load_default_config(args.method), args)
  generator = networks.create_generator(config)
  s = args.image_size
  x = np.random.default_rng(0).uniform(
      -1, 1, (args.batch, s, s, config.model.in_channels)).astype(np.float32)
  init = lambda: generator.init({'params': jax.random.PRNGKey(0)}, x[:1], train=False)
  x = jax.device_put(x)
  paper = args.mode == 'paper'

  @jax.jit
  def generate(variables, x, key):
    if paper:  # batch statistics and dropout; the statistics update is thrown away
      out, _ = generator.apply(variables, x, train=True, rngs={'dropout': key},
                               mutable=['batch_stats'])
      return out
    return generator.apply(variables, x, train=False)

  key = jax.random.PRNGKey(1)
  t0 = time.perf_counter()
  # As the trainer does: compile for the variables' shapes before they exist, give the
  # compiler's leftovers back to the OS, then create them (jit reuses this executable).
  compiled = generate.lower(jax.eval_shape(init), x, key).compile()
  compile_s = time.perf_counter() - t0
  flops = bench.flops_of(compiled)
  plain = networks.create_generator(bench.with_plain_convs(config))
  model_gflop = flops_lib.gflop(
      lambda v, x: plain.apply(v, x, train=True, rngs={'dropout': key},
                               mutable=['batch_stats']),
      jax.eval_shape(init), x)
  host_memory.release_free_memory()
  variables = jax.jit(init)()

  times = bench.timed_calls(lambda: jax.block_until_ready(generate(variables, x, key)),
                            args.warmup, args.steps)
  calib = bench.matmul_gflop_s()
  per_call = statistics.median(times)
  result = {
      'bench': 'inference',
      'batch': args.batch,
      'mode': args.mode,
      'img_per_s': round(args.batch / per_call, 3),
      's_per_call': round(per_call, 4),
      'compile_s': round(compile_s, 2),
      'gflop_per_call': None if flops is None else round(flops / 1e9, 2),
      'gflop_s': None if flops is None else round(flops / 1e9 / per_call, 1),
      'model_gflop_per_call': round(model_gflop, 2),
      'model_tflop_s': round(model_gflop / 1e3 / per_call, 3),
      'matmul_gflop_s': round(calib, 1),
      'peak_rss_mb': round(bench.peak_rss_mb(), 1),
      **bench.compiled_memory_mb(compiled),
      **bench.run_description(config, args, s, jax.devices()[0]),
  }
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()
