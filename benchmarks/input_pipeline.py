"""Images per second and CPU per image of the training input pipeline (jitter on).

  python benchmarks/input_pipeline.py                       # blue_marble, 0/1/2 workers
  python benchmarks/input_pipeline.py --photos DIR --datasets blue_marble,photos
  python benchmarks/input_pipeline.py --hd --photos DIR     # + pix2pixHD 2048x1024 examples

Variants, measured in rounds that alternate them (A B C A B C ...) in one process:
  grain:wN   p2p_jax's pipeline (input_pipeline.numpy_batches) with N worker processes
             (:resized with the train split resized to load_size once, --resized)
  thread_pool  the pipeline before Grain (p2p_jax/input_pipeline.py at --baseline, a git
             revision; 'none' leaves it out)
Each measurement starts the pipeline, pulls --warmup batches, then counts images for
--seconds, with the CPU time of this process and of its worker processes over the same
window. Datasets (prepared into a temporary folder, outside the timing):
  blue_marble  the embedded day|night tiles (512x256 JPEG pairs of smooth satellite images)
  photos       --pairs 512x256 JPEG pairs (quality 90) cut from the photos in --photos (any
               folder of photos, e.g. scikit-image's sample data: see benchmarks/README.md)
--hd also times pix2pixHD's labelled examples at 2048x1024 (photo, uint8 label map and
16-bit instance map decoded from PNG, flipped, no resize: the 1024p setting) on 1 worker.
One JSON line per measurement, then a summary line: per variant the median img/s, CPU ms
per image (the whole process tree), per-worker img/s, the 1 -> 2 workers scaling, and the
cores that --rate images/s (default 1,455: the H100 step at 256 px) would take at that
CPU cost.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # Run as a script from anywhere: find p2p_jax.

from p2p_jax import batches, config_schema, input_pipeline, jitter  # noqa: E402  pylint: disable=wrong-import-position


def _cpu_s(pid: int) -> float:
  """User + system CPU seconds of process `pid` (0 if it is gone)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
  except OSError:
    return 0.0


def _children() -> list[int]:
  me, found = str(os.getpid()), []
  for entry in os.listdir('/proc'):
    try:
      with open(f'/proc/{entry}/stat') as f:
        if entry.isdigit() and f.read().rsplit(')', 1)[1].split()[1] == me:
          found.append(int(entry))
    except OSError:
      continue
  return found


def measure(make, args) -> dict:
  """Starts an iterator (`make()`), warms it up, times --seconds of it."""
  t0 = time.perf_counter()
  it = make()
  next(it)
  start_s = time.perf_counter() - t0
  for _ in range(args.warmup):
    next(it)
  workers = _children()
  cpu0 = time.process_time(), {p: _cpu_s(p) for p in workers}
  images, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < args.seconds:
    images += len(next(it)['name'])
  wall = time.perf_counter() - t0
  main_cpu = time.process_time() - cpu0[0]
  worker_cpu = sum(_cpu_s(p) - c for p, c in cpu0[1].items())
  close = getattr(it, 'close', None)
  if close:
    close()
  return {'img_per_s': round(images / wall, 1), 'images': images,
          'cpu_ms_per_img': round(1000 * (main_cpu + worker_cpu) / images, 2),
          'main_cpu_ms_per_img': round(1000 * main_cpu / images, 2),
          'first_batch_s': round(start_s, 2)}


def photo_pairs(photos: str, folder: str, n: int) -> str:
  """`n` 512x256 JPEG pairs (A|B, quality 90) cut from the photos in `photos`: A a random
  256x256 window of a photo scaled to a random size, B another window of the same photo."""
  names = sorted(f for f in os.listdir(photos) if f.lower().endswith(('.jpg', '.jpeg', '.png')))
  images = []
  for name in names:
    with Image.open(os.path.join(photos, name)) as im:
      if im.mode == 'RGB' and min(im.size) >= 256:
        images.append(im.copy())
  if not images:
    raise SystemExit(f'no RGB photo of at least 256x256 in {photos}')
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(folder, 'train'))
  for k in range(n):
    im = images[k % len(images)]
    scale = rng.uniform(256 / min(im.size), max(1.0, 256 / min(im.size)) * 1.5)
    im = im.resize((max(256, round(im.size[0] * scale)), max(256, round(im.size[1] * scale))),
                   Image.Resampling.BICUBIC)
    halves = []
    for _ in range(2):
      x, y = (int(rng.integers(0, s - 256 + 1)) for s in im.size)
      halves.append(im.crop((x, y, x + 256, y + 256)))
    pair = Image.new('RGB', (512, 256))
    pair.paste(halves[0], (0, 0))
    pair.paste(halves[1], (256, 0))
    pair.save(os.path.join(folder, 'train', f'{k:04d}.jpg'), quality=90)
  return folder


class PngLabelled:
  """pix2pixHD-like records decoded from PNG bytes as a TFDS source would: an RGB photo, a
  uint8 label map and a 16-bit instance map, 2048x1024, from one real photo."""

  def __init__(self, photo: Image.Image, n: int = 4):
    rng = np.random.default_rng(0)
    self.records = []
    for k in range(n):
      big = photo.resize((2048 + 64 * k, 1024 + 32 * k), Image.Resampling.BICUBIC)
      big = big.crop((0, 0, 2048, 1024))
      gray = np.asarray(big.convert('L'))
      label = (gray // 8).astype(np.uint8)              # 32 "classes" following the photo
      # 16-bit PNG, as Cityscapes' instanceIds files (class id * 1000 + instance).
      instance = (label.astype(np.uint16) * 1000 + int(rng.integers(100))).astype(np.uint16)
      self.records.append({k2: _png(v) for k2, v in (('image', np.asarray(big)),
                                                    ('label', label),
                                                    ('instance', instance))})

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    record = {k: np.asarray(Image.open(io.BytesIO(v))) for k, v in self.records[index].items()}
    record['name'] = f'{index}.png'.encode()
    return record


def _png(array) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format='PNG')
  return out.getvalue()


def baseline_module(revision: str, tmp: str):
  """p2p_jax/input_pipeline.py as of git `revision`, imported as a module of its own."""
  source = subprocess.run(['git', 'show', f'{revision}:p2p_jax/input_pipeline.py'], cwd=REPO,
                          check=True, capture_output=True, text=True).stdout
  path = os.path.join(tmp, 'thread_pool_pipeline.py')
  with open(path, 'w') as f:
    f.write(source)
  spec = importlib.util.spec_from_file_location('thread_pool_pipeline', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--datasets', default='blue_marble',
                      help='comma-separated: blue_marble, photos')
  parser.add_argument('--photos', default='', help='folder of photos for the photos dataset')
  parser.add_argument('--pairs', type=int, default=200)
  parser.add_argument('--workers', default='0,1,2')
  parser.add_argument('--baseline', default='21427d8',
                      help="git revision of the thread-pool pipeline, or 'none'")
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--load_size', type=int, default=286)
  parser.add_argument('--crop_size', type=int, default=256)
  parser.add_argument('--warmup', type=int, default=5, help='batches before the timing')
  parser.add_argument('--seconds', type=float, default=15.0)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--rate', type=float, default=1455.0,
                      help='images/s to feed (default: the H100 step at 256 px)')
  parser.add_argument('--hd', action='store_true', help='also pix2pixHD 2048x1024 examples')
  parser.add_argument('--resized', action='store_true',
                      help='also each grain variant on the train split resized once '
                      '(config.data.resized_cache=1)')
  args = parser.parse_args()

  tmp = tempfile.mkdtemp(prefix='p2p_bench_pipeline.')
  try:
    configs = {}
    with contextlib.redirect_stdout(sys.stderr):  # TFDS and preparation print progress
      for name in args.datasets.split(','):
        config = config_schema.get_config().data
        config.data_dir, config.direction = os.path.join(tmp, 'tfds'), 'AtoB'
        config.load_size, config.crop_size = args.load_size, args.crop_size
        if name == 'photos':
          if not args.photos:
            raise SystemExit('--datasets photos needs --photos DIR')
          config.dataset = 'aligned_folder'
          config.source = photo_pairs(args.photos, os.path.join(tmp, 'photos'), args.pairs)
        else:
          config.dataset = name
        input_pipeline.num_examples(config, 'train')  # prepared outside the timing
        if args.resized:  # and resized once, outside the timing too
          kept = config.copy_and_resolve_references()
          kept.resized_cache = 1
          input_pipeline.numpy_batches(kept, 'train', batch_size=1, train=True, seed=0,
                                       process_index=0, process_count=1).close()
        configs[name] = config
      old = None if args.baseline == 'none' else baseline_module(args.baseline, tmp)

    def variants(config):
      out = {}
      if old is not None:
        out['thread_pool'] = lambda: old.numpy_batches(
            config, 'train', batch_size=args.batch, train=True, seed=0, process_index=0,
            process_count=1)
      for keep in ((0, 1) if args.resized else (0,)):
        kept = config.copy_and_resolve_references()
        kept.resized_cache = keep
        for w in map(int, args.workers.split(',')):
          out[f'grain:w{w}' + (':resized' if keep else '')] = (
              lambda w=w, kept=kept: input_pipeline.numpy_batches(
                  kept, 'train', batch_size=args.batch, train=True, seed=0, process_index=0,
                  process_count=1, workers=w))
      return out

    cases = [(name, variant, make) for name, config in configs.items()
             for variant, make in variants(config).items()]
    if args.hd:
      photos = [f for f in sorted(os.listdir(args.photos))] if args.photos else []
      photo = next((Image.open(os.path.join(args.photos, f)).convert('RGB') for f in photos
                    if f.lower().endswith(('.jpg', '.png'))), None)
      if photo is None:
        raise SystemExit('--hd needs --photos DIR')
      source = PngLabelled(photo)
      transform = jitter.Labelled(jitter.Geometry(2048, None, flip=True, scale='none'))
      cases.append(('pix2pixhd_2048x1024', 'grain:w1', lambda: batches.batch_iterator(
          (source,), transform, batch_size=1, train=True, seed=0, workers=1)))
    results = {}
    for r in range(args.rounds):
      for name, variant, make in cases:
        result = {'dataset': name, 'variant': variant, 'round': r, 'batch': args.batch,
                  **measure(make, args)}
        results.setdefault((name, variant), []).append(result)
        print(json.dumps(result), flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

  summary = {'cpus': os.cpu_count(), 'rate': args.rate, 'seconds': args.seconds}
  for (name, variant), rs in results.items():
    med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
    cost = med('cpu_ms_per_img')
    summary[f'{name}/{variant}'] = {'img_per_s': med('img_per_s'), 'cpu_ms_per_img': cost,
                                    'cores_for_rate': round(args.rate * cost / 1000, 1)}
  for name in configs:
    one, two = (summary.get(f'{name}/grain:w{w}', {}).get('img_per_s') for w in (1, 2))
    if one and two:
      summary[f'{name}/per_worker_img_per_s'] = one
      summary[f'{name}/scaling_1_to_2'] = round(two / one, 2)
  print(json.dumps(summary), flush=True)


if __name__ == '__main__':
  main()
