"""Peak memory and time of `python -m p2p_jax.translate` on large JPEGs, tiled and whole.

  PYTHONPATH=. python benchmarks/translate_memory.py                  # 2k, 4k, 9k; unet_256
  PYTHONPATH=. python benchmarks/translate_memory.py --sizes 2048 4096 --variants auto off
  PYTHONPATH=. python benchmarks/translate_memory.py --sizes 9000 --variants 2048:256

Each case is one fresh `python -m p2p_jax.translate` process, run as a user runs it, on a
real JPEG of SIZE x SIZE px (a mosaic of the embedded Blue Marble day tiles, upscaled
bicubic with mild noise, quality 90), with a unet_256 (configs/default.py, paper mode by
default) of random weights in a workdir the script makes once (memory and time do not
depend on the weights). Variants: 'auto' (the default tiling), 'off' (the whole image in
one pass: translate before tiling), or 'TILE:MARGIN' (--tile=TILE --tile_margin=MARGIN).
An 'off' case whose estimated need (--whole-kb-per-px, 0.75 KB per padded pixel for
unet_256, + 1 GB) exceeds the machine's available memory is skipped and says so. Compilation is included (the
persistent cache is off: every case compiles, as a first run does).

Prints one JSON line per case:
  peak_rss_mb     the translate process's peak resident memory (getrusage of the child;
                  the whole process: Python, JAX, weights, image, tiles, PNG)
  wall_s          from the command to its exit (disturbed by other load on the machine)
  decode_peak_rss_mb   a separate process that only imports Pillow and p2p_jax.image_io
                  and decodes the JPEG (what decoding alone takes)
  tiles           the output's `p2p_jax.tiles` metadata ('' when it ran whole)
  note            translate's tiling line
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_jpeg(path: str, size: int, seed: int = 0) -> str:
  """A SIZE x SIZE JPEG of upscaled Blue Marble day tiles (made once per size)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if os.path.exists(path):
    return path
  folder = os.path.join(REPO, 'p2p_jax', 'datasets', 'blue_marble', 'train')
  names = sorted(os.listdir(folder))[:64]
  tiles = [np.asarray(Image.open(os.path.join(folder, n)).convert('RGB'))[:, :256]
           for n in names]
  mosaic = np.concatenate([np.concatenate(tiles[r * 8:r * 8 + 8], axis=1) for r in range(8)])
  big = Image.fromarray(mosaic).resize((size, size), Image.BICUBIC)
  del mosaic
  rng = np.random.default_rng(seed)
  pixels = np.array(big)
  del big
  for r in range(0, size, 512):     # mild per-pixel noise, a band at a time
    band = pixels[r:r + 512].astype(np.int16) + rng.integers(-8, 9, pixels[r:r + 512].shape)
    pixels[r:r + 512] = np.clip(band, 0, 255)
  Image.fromarray(pixels).save(path + '.tmp.jpg', quality=90)
  os.replace(path + '.tmp.jpg', path)
  return path


def make_workdir(path: str, generator: str, ngf: int) -> str:
  """A workdir with config.json and a step-0 checkpoint of randomly initialised networks."""
  if os.path.isdir(os.path.join(path, 'checkpoints', '0')):
    return path
  from p2p_jax import checkpointing, config_schema, workdirs  # pylint: disable=import-outside-toplevel
  from p2p_jax.pytorch import workdir as pt_workdir  # pylint: disable=import-outside-toplevel
  config = config_schema.get_config()
  config.model.generator, config.model.ngf = generator, ngf
  state = pt_workdir.build_state(config, None)  # the trainer's init, from config.seed
  os.makedirs(path, exist_ok=True)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(path), async_save=False) as ckpt:
    ckpt.save(0, state)
  workdirs.save_config(config, path)
  return path


def available_mb() -> float:
  with open('/proc/meminfo') as f:
    for line in f:
      if line.startswith('MemAvailable:'):
        return int(line.split()[1]) / 1024
  return float('inf')


def run(cmd: list[str]) -> tuple[float, float, str, int]:
  """(wall s, peak RSS MB of the child, its output, exit status).

  A child's ru_maxrss also counts the parent's resident memory at the fork, so this
  process stays small: it makes the inputs and the workdir in child processes too.
  """
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          cwd=REPO)
  out = proc.stdout.read().decode(errors='replace')
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  return time.perf_counter() - start, usage.ru_maxrss / 1024, out, proc.returncode


def depth(generator: str) -> int:
  from p2p_jax.models import GENERATORS  # pylint: disable=import-outside-toplevel
  return GENERATORS[generator][0]


def tiles_of(png: str) -> str:
  from p2p_jax import image_io  # pylint: disable=import-outside-toplevel
  return image_io.read_png_metadata(png).get('p2p_jax.tiles', '')


def _in_child(name: str, *args) -> str:
  """The printed result of this module's function `name`(*args), run in a child."""
  code = (f'import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); '
          f'import translate_memory as t; print(t.{name}(*{args!r}))')
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  done = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, check=True,
                        stdout=subprocess.PIPE, text=True)
  return (done.stdout.strip().splitlines() or [''])[-1]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', type=int, nargs='+', default=[2048, 4096, 9000])
  parser.add_argument('--variants', nargs='+', default=['auto', 'off'])
  parser.add_argument('--mode', default='paper', choices=['paper', 'eval'])
  parser.add_argument('--generator', default='unet_256')
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--whole-kb-per-px', type=float, default=0.75,
                      help="an 'off' case's estimated need per padded pixel (unet_256: "
                      '0.75; unet_32 at ngf 4: 0.12), to skip what cannot fit')
  parser.add_argument('--dir', default='/tmp/p2p_translate_memory',
                      help='inputs, workdir and outputs (reused between runs)')
  args = parser.parse_args(argv)

  os.makedirs(args.dir, exist_ok=True)
  workdir = os.path.join(args.dir, f'{args.generator}_ngf{args.ngf}')
  _in_child('make_workdir', workdir, args.generator, args.ngf)
  multiple = 2 ** int(_in_child('depth', args.generator))
  for size in args.sizes:
    src = os.path.join(args.dir, f'input_{size}.jpg')
    _in_child('make_jpeg', src, size)
    _, decode_mb, _, _ = run([sys.executable, '-c', 'import sys; from p2p_jax import '
                              'image_io; image_io.read_image(sys.argv[1])', src])
    for variant in args.variants:
      record = {'size': size, 'variant': variant, 'generator': args.generator,
                'ngf': args.ngf, 'mode': args.mode, 'input_mb': round(
                    os.path.getsize(src) / 2 ** 20, 1), 'decode_peak_rss_mb': round(decode_mb)}
      padded = (-(-size // multiple) * multiple) ** 2
      need = padded * args.whole_kb_per_px * 1e3 / 2 ** 20 + 1024
      if variant == 'off' and need > available_mb():
        record['skipped'] = (f'the whole image needs about {need / 1024:.0f} GB; '
                             f'{available_mb() / 1024:.0f} GB available')
        print(json.dumps(record), flush=True)
        continue
      tile, _, margin = variant.partition(':')
      margin = margin or 'auto'
      dst = os.path.join(args.dir, f'output_{size}_{variant.replace(":", "_")}.png')
      cmd = [sys.executable, '-m', 'p2p_jax.translate', f'--workdir={workdir}',
             f'--input={src}', f'--output={dst}', f'--mode={args.mode}', f'--tile={tile}',
             f'--tile_margin={margin}', '--compilation_cache=none']
      wall, peak, out, rc = run(cmd)
      record.update(cmd=' '.join(['python'] + cmd[1:]), rc=rc, wall_s=round(wall, 1),
                    peak_rss_mb=round(peak))
      if rc == 0:
        record['tiles'] = _in_child('tiles_of', dst)
        record['note'] = next((l for l in out.splitlines() if l.startswith('tiles:')), '')
      else:
        record['output_tail'] = out[-2000:]
      print(json.dumps(record), flush=True)


if __name__ == '__main__':
  main()
