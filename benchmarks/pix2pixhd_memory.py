"""Device memory of pix2pixHD's training step, from the compiled program's memory analysis.

The step is traced, lowered and compiled exactly as the trainer does it (the method's
step mapped by parallel.DataParallel, the state donated) for abstract shapes only, and
never run: the state comes from jax.eval_shape and the VGG19 weights are
jax.ShapeDtypeStructs (no weights exist anywhere). XLA's buffer assignment then says
what the program needs per device: arguments (state, batch, VGG19 weights), outputs (the
new state; the donated state's buffers are reused: alias), temporaries (activations kept
for the backward pass, gradients, scratch) and generated code.

  nice python benchmarks/pix2pixhd_memory.py                       # the table's cases
  nice python benchmarks/pix2pixhd_memory.py --configs=1024p --dtypes=bfloat16 \\
      --remat=1 --vgg=1 --spatial=1,2,4 --out=benchmarks/results/x.jsonl

Each case compiles in its own process (one at a time: a 2048x1024 step takes minutes and
GBs of host memory to compile) and prints one JSON line; --out appends them to a file.
Memory is per device: with --spatial=N the image's height is split over N (fake CPU)
devices (config.compute.spatial). Convolutions are XLA's own ops (conv_impl 'xla', what
'auto' picks on a GPU or TPU).

Caveat: by default this is XLA:CPU's compiler, whose program differs from a GPU's where it
matters here: it computes bfloat16 convolutions in float32 (converted copies), and turns
each weight gradient into a convolution of transposed copies of the layer's input and
output gradient, which it makes during the forward pass and keeps until the backward one
(4.3 of the 12.1 GiB live at the peak of the 1024p bfloat16 + remat step without VGG
when D still ran on its two input pairs stacked;
benchmarks/README.md). So bfloat16 and remat save little here, and the CPU figures are an
upper bound for a GPU, not its peak; a GPU also adds cuDNN workspace and the runtime's own.
On a machine with GPUs, --platform=gpu compiles for them (spatial N needs N GPUs).

Without a GPU, --target=h100_sxm compiles with XLA's GPU compiler for compile-only CUDA
devices described by benchmarks/gpu_targets/h100_sxm.txtpb (jax's CUDA plugin must be
installed: pip install "jax[cuda12]"; nothing needs a GPU or its driver). No GPU means no
autotuning: each conv takes cuDNN's default algorithm. On a GPU, XLA reports its own peak
(xla_peak_bytes, from its heap simulation), which is the figure to read there.
"""

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# config name -> (file, height, width): the recipes at their training size.
CONFIGS = {'512p': ('pix2pixhd_cityscapes_512p.py', 512, 1024),
           '1024p': ('pix2pixhd_cityscapes_1024p.py', 1024, 2048),
           'demo': ('pix2pixhd_demo.py', 128, 128)}
GIB = 2.0 ** 30
# XLA GPU target configs (GpuTargetConfigProto, text): a GPU's description for compiling
# without one.
TARGETS = os.path.join(ROOT, 'benchmarks', 'gpu_targets')


def _targets() -> list:
  return sorted(f[:-len('.txtpb')] for f in os.listdir(TARGETS) if f.endswith('.txtpb'))


def _target_devices(target: str, spatial: int) -> list:
  """Compile-only CUDA devices described by the target file `target` (no GPU needed)."""
  # pylint: disable=import-outside-toplevel
  from jax.experimental import topologies
  path = target if os.path.exists(target) else os.path.join(TARGETS, target + '.txtpb')
  with open(path, encoding='utf-8') as f:
    config = f.read()
  try:
    topology = topologies.get_topology_desc(platform='cuda', target_config=config,
                                            topology=f'1x1x{spatial}')
  except NotImplementedError as e:  # jax without its CUDA plugin
    raise SystemExit(f'--target needs jax\'s CUDA plugin (pip install "jax[cuda12]"): {e}')
  return list(topology.devices)


def measure(name: str, dtype: str, remat: bool, vgg: bool, spatial: int,
            batch: int = 1, target: str = '', instance_feat: bool = False) -> dict:
  """Compiles the step of config `name` for one case; its memory analysis as a dict."""
  # pylint: disable=import-outside-toplevel  (jax after XLA_FLAGS, in the child process)
  import jax
  import numpy as np
  from p2p_jax import config_schema, parallel
  from p2p_jax.methods import pix2pixhd
  from p2p_jax.models import vgg19

  path, height, width = CONFIGS[name]
  config = config_schema.load_file(os.path.join(ROOT, 'configs', path))
  config.compute.update(dtype=dtype, conv_impl='xla', mapping='shard_map', spatial=spatial)
  config.pix2pixhd.update(remat=remat, vgg_loss=vgg, instance_feat=instance_feat)
  config.pix2pixhd.load_pretrain = ''  # the architecture only; nothing is read
  setup = pix2pixhd.METHOD.setup(config, 1, parallel.AXIS)
  constants = None
  if vgg:  # shapes only: never weights that are not torchvision's
    constants = {i: (jax.ShapeDtypeStruct((3, 3, c, o), np.float32),
                     jax.ShapeDtypeStruct((o,), np.float32))
                 for i, (o, c) in vgg19.CONV_SHAPES.items()}
  devices = _target_devices(target, spatial) if target else jax.devices()[:spatial]
  runner = parallel.DataParallel(setup.step, 'shard_map', devices=devices,
                                 donate=True, constants=constants, spatial=spatial)
  keys = pix2pixhd.METHOD.batch_keys_for(config)
  shapes = {'label': ((height, width), np.int32), 'instance': ((height, width), np.int32),
            'input': ((height, width, config.model.in_channels), np.float32),
            'target': ((height, width, config.model.out_channels), np.float32)}
  host_batch = {k: jax.ShapeDtypeStruct((batch,) + shapes[k][0], shapes[k][1])
                for k in keys}
  start = time.perf_counter()
  lowered = runner.lower(jax.eval_shape(setup.init), host_batch)
  traced = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - traced
  m = compiled.memory_analysis()
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes +
          m.temp_size_in_bytes)
  g_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      jax.eval_shape(setup.init).g.params))
  return {'config': name, 'size': f'{width}x{height}', 'batch': batch, 'dtype': dtype,
          'remat': remat, 'vgg': vgg, 'spatial': spatial, 'instance_feat': instance_feat,
          'g_params': g_params,
          'argument_bytes': m.argument_size_in_bytes, 'output_bytes': m.output_size_in_bytes,
          'alias_bytes': m.alias_size_in_bytes, 'temp_bytes': m.temp_size_in_bytes,
          'generated_code_bytes': m.generated_code_size_in_bytes,
          # XLA's own figure where the backend reports one (XLA:CPU: 0).
          'xla_peak_bytes': int(getattr(m, 'peak_memory_in_bytes', 0) or 0),
          'peak_bytes': peak, 'peak_gib': round(peak / GIB, 3),
          'temp_gib': round(m.temp_size_in_bytes / GIB, 3),
          'trace_s': round(traced - start, 1), 'compile_s': round(compile_s, 1),
          # The compiling process's peak resident memory (host RAM the compile took).
          'host_max_rss_gib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss *
                                    1024 / GIB, 2),
          'backend': f'{devices[0].platform} {devices[0].device_kind}' + (
              ' (compile only)' if target else ''), 'jax': jax.__version__}


def _flag_list(text: str, kind=str) -> list:
  return [kind(v) for v in text.split(',') if v]


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--configs', default='1024p', help=f'of {list(CONFIGS)}, comma-separated')
  p.add_argument('--dtypes', default='float32,bfloat16')
  p.add_argument('--remat', default='0,1', help='0, 1 or both')
  p.add_argument('--vgg', default='0,1', help='0, 1 or both')
  p.add_argument('--spatial', default='1', help='devices per image, e.g. 1,2,4')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--platform', default='cpu', help="JAX_PLATFORMS of the compiling "
                 "process: 'cpu' (N fake devices for spatial N) or 'gpu' / 'tpu' (real ones)")
  p.add_argument('--target', default='', help='compile for this GPU without one: a name '
                 f'in benchmarks/gpu_targets ({", ".join(_targets())}) or an XLA GPU target '
                 'config file (text proto); needs jax\'s CUDA plugin installed')
  p.add_argument('--instance_feat', action='store_true', help='with the feature encoder '
                 '(config.pix2pixhd.instance_feat; its g_params include E\'s)')
  p.add_argument('--out', default='', help='append the JSON lines to this file')
  p.add_argument('--one', default='', help=argparse.SUPPRESS)  # a child's case (JSON)
  args = p.parse_args(argv)
  if args.one:
    print(json.dumps(measure(**json.loads(args.one))), flush=True)
    return
  cases = itertools.product(_flag_list(args.configs), _flag_list(args.dtypes),
                            _flag_list(args.remat, int), _flag_list(args.vgg, int),
                            _flag_list(args.spatial, int))
  for name, dtype, remat, vgg, spatial in cases:
    case = {'name': name, 'dtype': dtype, 'remat': bool(remat), 'vgg': bool(vgg),
            'spatial': spatial, 'batch': args.batch, 'target': args.target,
            'instance_feat': args.instance_feat}
    env = dict(os.environ, JAX_PLATFORMS='cpu' if args.target else args.platform,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    if args.target:
      # No device to time cuDNN's algorithms on: XLA's default choice for each conv.
      env['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                          ' --xla_gpu_autotune_level=0').strip()
    elif args.platform == 'cpu':
      env['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                          f' --xla_force_host_platform_device_count={spatial}').strip()
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--one',
                           json.dumps(case)], env=env, capture_output=True, text=True,
                          check=False)
    lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
    if done.returncode or not lines:
      print(json.dumps({**case, 'error': (done.stderr.strip().splitlines() or ['?'])[-1],
                        'returncode': done.returncode}), flush=True)
      continue
    print(lines[-1], flush=True)
    if args.out:
      with open(args.out, 'a', encoding='utf-8') as f:
        f.write(lines[-1] + '\n')


if __name__ == '__main__':
  main()
