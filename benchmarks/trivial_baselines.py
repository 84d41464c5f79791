"""Scores of trivial outputs on a dataset split, as `python -m p2p_jax.evaluate` scores a model.

  PYTHONPATH=. python benchmarks/trivial_baselines.py --config=configs/demo.py \
      [--config.data.data_dir=DIR] [--split=test]

Prints one JSON line per baseline: mean L1 ([-1, 1] images) and PSNR (dB, [0, 1] images)
over the split, with the images read by the evaluation pipeline (resized straight to
crop_size, no jitter), so the numbers compare directly with evaluate's:
  black        every output pixel -1 (all black)
  mean_train   the mean training target: the train split's targets, resized the same way,
               averaged pixel by pixel (what a generator that ignored its input would
               learn under an L2 loss; its median is the L1 optimum, see median_train)
  median_train the per-pixel median of the same targets
A model that does not beat these has not learned the translation, whatever else it shows.
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from p2p_jax import input_pipeline, metrics

_CONFIG = config_flags.DEFINE_config_file('config', None, 'training config', lock_config=True)
_SPLIT = flags.DEFINE_string('split', 'test', 'split to score')


def _targets(config, split):
  batches = input_pipeline.numpy_batches(
      config.data, split, batch_size=16, train=False, seed=0, process_index=0,
      process_count=1, in_channels=config.model.in_channels,
      out_channels=config.model.out_channels)
  return np.concatenate([b['target'] for b in batches])


def main(argv):
  del argv
  config = _CONFIG.value
  train, test = _targets(config, config.data.train_split), _targets(config, _SPLIT.value)
  outputs = {
      'black': -np.ones_like(test),
      'mean_train': np.broadcast_to(train.mean(0), test.shape),
      'median_train': np.broadcast_to(np.median(train, 0), test.shape),
  }
  for name, out in outputs.items():
    print(json.dumps({
        'baseline': name, 'split': _SPLIT.value, 'num_images': len(test),
        'size': test.shape[1], 'l1': round(float(np.mean(metrics.l1(out, test))), 4),
        'psnr': round(float(np.mean(metrics.psnr(out, test))), 2)}), flush=True)


if __name__ == '__main__':
  sys.exit(app.run(main))
