"""Benchmark of one pix2pix training iteration (D step + G step), built as training builds it.

  PYTHONPATH=. python benchmarks/train_step.py --batch 1
  PYTHONPATH=. python benchmarks/train_step.py --batch 4 --conv-impl xla --steps 5

Paper setup: unet_256 + 70x70 PatchGAN, batch norm, 256x256, random data in [-1, 1].
The step is assembled exactly as the trainer does (the method's setup, p2p_jax/methods,
and parallel.DataParallel with donation),
on `--devices` devices (default 1). The compiled executable's XLA cost analysis gives the
FLOPs per step. Prints one JSON line; see benchmarks/README.md for the numbers measured.

Runs without TensorFlow (the package's config schema needs only ml_collections, a small
pure-Python wheel), so it runs on a GPU machine with jax/flax/optax/orbax.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

if __name__ == '__main__':  # as `python -m p2p_jax.main` does (see p2p_jax/host_memory.py)
  from p2p_jax import host_memory
  host_memory.reexec_with_hugepage_malloc()

import jax  # noqa: E402
import numpy as np  # noqa: E402


def load_default_config(method: str = 'pix2pix'):
  """The paper's config (p2p_jax.config_schema), or configs/cyclegan.py's for CycleGAN."""
  from p2p_jax import config_schema
  if method == 'cyclegan':
    return config_schema.load_file(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'configs', 'cyclegan.py'))
  return config_schema.get_config()


def peak_rss_mb() -> float:
  """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_peak_mb(device) -> float | None:
  """Peak accelerator memory, where the backend reports it (GPU/TPU), else None."""
  try:
    stats = device.memory_stats()
  except Exception:  # CPU backends may not implement it.
    return None
  if not stats or 'peak_bytes_in_use' not in stats:
    return None
  return stats['peak_bytes_in_use'] / 2**20


def flops_of(compiled) -> float | None:
  """FLOPs of a compiled executable from XLA's cost analysis (dict, or list of dicts)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # not every backend / jax version implements it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return None if not cost or 'flops' not in cost else float(cost['flops'])


def compiled_memory_mb(compiled) -> dict:
  """What XLA planned for one executable: its scratch (temp) and argument buffers, in MB.

  Unlike the device's peak counter, this belongs to this executable alone, so it stays
  right when several benchmarks run in one process (benchmarks/gpu_sweep.py).
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # not every backend / jax version implements it
    return {'temp_mb': None, 'argument_mb': None}
  if isinstance(stats, (list, tuple)):
    stats = stats[0] if stats else None
  if stats is None:
    return {'temp_mb': None, 'argument_mb': None}
  return {'temp_mb': round(stats.temp_size_in_bytes / 2**20, 1),
          'argument_mb': round(stats.argument_size_in_bytes / 2**20, 1)}


def matmul_gflop_s(n: int = 1024, reps: int = 5) -> float:
  """Float32 matmul speed right now: a yardstick for runs on shared, contended machines."""
  import jax.numpy as jnp
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a))
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def timed_calls(fn, warmup: int, steps: int) -> list[float]:
  """Calls fn() warmup + steps times (each blocks on its result); returns timed seconds."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return times


def run_description(config, args, image_size: int, device) -> dict:
  """The fields that say what ran where, shared by the benchmarks' JSON lines."""
  from p2p_jax import host_memory
  return {
      'device_peak_mb': device_peak_mb(device),
      'backend': jax.default_backend(),
      'device': device.device_kind,
      'dtype': args.dtype,
      'conv_impl': config.compute.conv_impl,
      'method': config.method,
      'generator': config.model.generator,
      'image_size': image_size,
      'steps': args.steps,
      'cpu_count': os.cpu_count(),
      'machine': platform.machine(),
      'jax': jax.__version__,
      'malloc_hugetlb': host_memory.HUGEPAGE_TUNABLE in os.environ.get('GLIBC_TUNABLES', ''),
  }


def build_step(config, image_size: int):
  """(train_step, init) for one replica, assembled as the trainer assembles them (the
  step of the config's method, p2p_jax/methods)."""
  import copy
  from p2p_jax import methods, parallel
  config = copy.deepcopy(config)
  config.data.crop_size = image_size
  setup = methods.get(config).setup(config, 1000, parallel.AXIS)
  return setup.step, setup.init


def with_plain_convs(config):
  """A copy of config whose model uses XLA's plain conv ops (the paper's arithmetic)."""
  import copy
  plain = copy.deepcopy(config)
  plain.compute.conv_impl = 'xla'
  return plain


def model_gflop_per_step(config, batch, image_size: int) -> float:
  """GFLOPs of the paper's step on this batch (benchmarks/flops.py), whatever form runs."""
  import flops
  from p2p_jax import parallel
  step, init = build_step(with_plain_convs(config), image_size)
  return flops.gflop(step, jax.eval_shape(init), batch, axis_env=[(parallel.AXIS, 1)])


def add_model_args(parser):
  """The options that say which network runs: --dtype, --conv-impl, --generator, --image-size."""
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument('--conv-impl', default=None,
                      help="config.compute.conv_impl (default: the config's, i.e. 'auto')")
  parser.add_argument('--method', default='pix2pix', choices=['pix2pix', 'cyclegan'],
                      help="the paper's pix2pix, or CycleGAN as configs/cyclegan.py")
  parser.add_argument('--generator', default=None,
                      help="config.model.generator (default: the method's: unet_256, "
                      'resnet_9blocks)')
  parser.add_argument('--image-size', type=int, default=256)


def random_batch(config, batch: int, image_size: int) -> dict:
  """A training batch of uniform noise in [-1, 1], the shapes the trainer feeds."""
  rng = np.random.default_rng(0)
  shape = (batch, image_size, image_size)
  return {'input': rng.uniform(-1, 1, shape + (config.model.in_channels,)).astype(np.float32),
          'target': rng.uniform(-1, 1, shape + (config.model.out_channels,)
                                ).astype(np.float32)}


def apply_common_args(config, args):
  config.compute.dtype = args.dtype
  if args.conv_impl is not None:
    config.compute.conv_impl = args.conv_impl
  if args.generator:
    config.model.generator = args.generator
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=1, help='global batch size')
  parser.add_argument('--steps', type=int, default=5, help='timed iterations')
  parser.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
  parser.add_argument('--parallel', default='pmap', choices=['pmap', 'shard_map'])
  add_model_args(parser)
  parser.add_argument('--devices', type=int, default=1, help='devices to map the step over')
  args = parser.parse_args(argv)

  from p2p_jax import host_memory, parallel

  config = apply_common_args(load_default_config(args.method), args)
  devices = jax.devices()[:args.devices]
  step, init = build_step(config, args.image_size)
  dp = parallel.DataParallel(step, args.parallel, devices=devices, donate=True)

  s = args.image_size
  batch = random_batch(config, args.batch, s)

  # As the trainer does: compile first (jit's cache is shared: no second compile), give
  # the compiler's leftovers back to the OS, then create the state.
  abstract = jax.eval_shape(init)
  t0 = time.perf_counter()
  compiled = dp.lower(abstract, batch).compile()
  compile_s = time.perf_counter() - t0
  flops = flops_of(compiled)
  model_gflop = model_gflop_per_step(config, batch, args.image_size)
  init_compiled = jax.jit(init).lower().compile()
  rss_compile = peak_rss_mb()
  host_memory.release_free_memory()
  state = dp.put_state(init_compiled())
  jax.block_until_ready(state)
  rss_init = peak_rss_mb()

  holder = {'state': state}

  def one_step():
    new_state, metrics = dp(holder['state'], batch)
    jax.block_until_ready(metrics)
    holder['state'] = new_state

  times = timed_calls(one_step, args.warmup, args.steps)
  calib = matmul_gflop_s()
  s_per_step = statistics.median(times)
  result = {
      'bench': 'train_step',
      'batch': args.batch,
      'img_per_s': round(args.batch / s_per_step, 3),
      's_per_step': round(s_per_step, 4),
      's_per_step_min': round(min(times), 4),
      'compile_s': round(compile_s, 2),
      'gflop_per_step': None if flops is None else round(flops / 1e9, 2),
      'peak_rss_mb': round(peak_rss_mb(), 1),
      **compiled_memory_mb(compiled),
      'peak_rss_mb_after_compile': round(rss_compile, 1),
      'peak_rss_mb_after_init': round(rss_init, 1),
      'matmul_gflop_s': round(calib, 1),
      'gflop_s': None if flops is None else round(flops / 1e9 / s_per_step, 1),
      'model_gflop_per_step': round(model_gflop, 2),
      'model_tflop_s': round(model_gflop / 1e3 / s_per_step, 3),
      'n_devices': len(devices),
      'parallel': args.parallel,
      **run_description(config, args, s, devices[0]),
  }
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main()
