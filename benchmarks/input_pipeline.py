"""Images per second that the training input pipeline delivers (with jitter).

  python benchmarks/input_pipeline.py [--dataset blue_marble] [--batch 4] [--seconds 10]

Prepares the dataset if needed (blue_marble: into a temporary folder, in seconds), pulls
batches for a warm-up, then counts images for --seconds, and prints ONE JSON line on stdout:
  {"img_per_s": ..., "batch": 4, "dataset": "blue_marble", "load_size": 286, "crop_size": 256,
   ...}
The training step consumes about 1-3 images/s on a 2-core CPU (shared/DESIGN.md section 3):
the pipeline should stay well above that, as it has to share those cores with the step.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # Run as a script from anywhere: find p2p_jax.

from p2p_jax import config_schema, input_pipeline  # pylint: disable=wrong-import-position


def measure(config, args) -> tuple[int, float, float]:
  """Returns (images delivered, seconds, seconds spent preparing the dataset)."""
  start = time.time()
  input_pipeline.num_examples(config, config.train_split)  # Prepare outside the timing.
  prepare_s = time.time() - start
  batches = input_pipeline.numpy_batches(config, config.train_split, batch_size=args.batch,
                                         train=True, seed=0, process_index=0, process_count=1)
  for _ in range(args.warmup_batches):
    next(batches)
  images, start = 0, time.time()
  while time.time() - start < args.seconds:
    images += len(next(batches)['input'])
  return images, time.time() - start, prepare_s


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='blue_marble')
  parser.add_argument('--source', default='', help='config.data.source')
  parser.add_argument('--data_dir', default='',
                      help='config.data.data_dir; blue_marble default: a temporary folder')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--load_size', type=int, default=286)
  parser.add_argument('--crop_size', type=int, default=256)
  parser.add_argument('--resize_method', default='bicubic')
  parser.add_argument('--warmup_batches', type=int, default=10)
  parser.add_argument('--seconds', type=float, default=10.0)
  args = parser.parse_args()

  config = config_schema.get_config().data
  config.dataset, config.source = args.dataset, args.source
  config.load_size, config.crop_size = args.load_size, args.crop_size
  config.resize_method = args.resize_method
  temporary = None
  if args.data_dir:
    config.data_dir = args.data_dir
  elif args.dataset == 'blue_marble':
    config.data_dir = temporary = tempfile.mkdtemp(prefix='p2p_bench_')
  try:
    with contextlib.redirect_stdout(sys.stderr):  # TFDS prints progress on stdout.
      images, elapsed, prepare_s = measure(config, args)
  finally:
    if temporary:
      shutil.rmtree(temporary, ignore_errors=True)
  print(json.dumps({
      'img_per_s': round(images / elapsed, 2), 'batch': args.batch, 'dataset': args.dataset,
      'load_size': args.load_size, 'crop_size': args.crop_size,
      'resize_method': args.resize_method, 'images': images, 'seconds': round(elapsed, 2),
      'prepare_s': round(prepare_s, 2), 'cpus': os.cpu_count()}))


if __name__ == '__main__':
  main()
