"""Input pipeline: prepared TFDS examples -> jittered, scaled, batched pairs (tf.data).

The only module of the trainer's path that uses TensorFlow, and only inside its functions:
importing it costs nothing, and the trainer just consumes `numpy_batches` (any iterator of
{'input', 'target', 'name'} numpy dicts does as well, e.g. a synthetic one on a machine
without TensorFlow).

Per example, as the paper and the PyTorch reference (Isola et al. 2017, section 6.2):
  decode A and B -> resize each to load_size x load_size (config.data.resize_method,
  bicubic by default, with antialiasing when shrinking, as PIL does) -> one random
  crop_size crop and one random horizontal flip, applied to A and B stacked on channels, so
  both get exactly the same ones -> scale [0, 255] to [-1, 1] -> input/target by direction.
Evaluation (train=False): resize straight to crop_size; no crop, no flip, one pass.

Determinism: the crop and flip of the i-th example of the stream are drawn by stateless ops
from the key (seed, process_index, i), and the shuffle orders are seeded, so a seed gives the
same batches every run.
Multi-host: each process reads its own, disjoint, equal share of the split
(`tfds.split_for_jax_process`; training drops the remainder so every host has the same number
of examples; evaluation keeps it, so the shares differ by at most one example) and
`batch_size` is the per-process batch.
"""

from typing import Iterator

import numpy as np

from p2p_jax import parallel
from p2p_jax.datasets.catalog import DataError

# config.data.direction: which half is the input; config.data.resize_method: tf.image's.
DIRECTIONS = ('AtoB', 'BtoA')
RESIZE_METHODS = ('bicubic', 'bilinear', 'nearest', 'area')


def _tf():
  """Imports TensorFlow, keeping it off any GPU/TPU (those belong to JAX)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # Devices were already initialised, and thereby already hidden by an earlier call.
  return tf


def _builder(data_config, split: str, in_channels: int, out_channels: int):
  """The prepared builder for `config.data`, after checking that it has `split`."""
  from p2p_jax.datasets import pix2pix_aligned  # pylint: disable=g-import-not-at-top
  builder = pix2pix_aligned.prepare(data_config, in_channels=in_channels,
                                    out_channels=out_channels)
  if split not in builder.info.splits:
    raise DataError(f'{data_config.dataset}: no split {split!r}; it has '
                    f'{", ".join(sorted(builder.info.splits))} (config.data.train_split / '
                    'eval_split)')
  return builder


def num_examples(data_config, split: str, *, in_channels: int = 3,
                 out_channels: int = 3) -> int:
  """Examples in `split` over all processes (prepares the dataset if needed)."""
  return _builder(data_config, split, in_channels, out_channels).info.splits[split].num_examples


def preprocess(example: dict, key, *, data_config, train: bool, in_channels: int,
               out_channels: int, stored_channels: tuple[int, int]) -> dict:
  """One TFDS example (PNG bytes in "a" and "b") -> {"input", "target", "name"} in [-1, 1].

  `key` is an int64 [2] stateless seed; it is unused when train=False."""
  tf = _tf()
  a_channels, b_channels = in_channels, out_channels
  if data_config.direction == 'BtoA':
    a_channels, b_channels = out_channels, in_channels
  size = data_config.load_size if train else data_config.crop_size

  def load(encoded, stored, wanted):
    image = tf.io.decode_png(encoded, channels=stored)
    if wanted == 1 and stored == 3:
      image = tf.image.rgb_to_grayscale(image)
    image = tf.cast(image, tf.float32)
    # Antialias (as PIL) only when shrinking: enlarging gives the same result without it,
    # at less than half the cost.
    shrink = tf.reduce_any(tf.shape(image)[:2] > size)
    image = tf.cond(
        shrink,
        lambda: tf.image.resize(image, (size, size), data_config.resize_method, antialias=True),
        lambda: tf.image.resize(image, (size, size), data_config.resize_method))
    return tf.clip_by_value(image, 0.0, 255.0)  # Bicubic overshoots at sharp edges.

  pair = tf.concat([load(example['a'], stored_channels[0], a_channels),
                    load(example['b'], stored_channels[1], b_channels)], axis=-1)
  if train:
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    crop = data_config.crop_size
    pair = tf.image.stateless_random_crop(pair, (crop, crop, a_channels + b_channels),
                                          seed=crop_key)
    if data_config.flip:
      pair = tf.image.stateless_random_flip_left_right(pair, seed=flip_key)
  pair = pair / 127.5 - 1.0
  a, b = pair[..., :a_channels], pair[..., a_channels:]
  source, target = (a, b) if data_config.direction == 'AtoB' else (b, a)
  return {'input': source, 'target': target, 'name': example['name']}


def create_dataset(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                   process_index: int | None = None, process_count: int | None = None,
                   in_channels: int = 3, out_channels: int = 3, start_batch: int = 0):
  """A tf.data.Dataset of batches {'input': [B,H,W,Cin], 'target': [B,H,W,Cout], 'name': [B]}.

  train=True: shuffled, jittered, repeated forever, full batches only. train=False: no
  jitter, one pass in a fixed order, last batch possibly smaller. `batch_size` is per
  process; process_index/process_count default to JAX's. Prepares the dataset if needed.
  start_batch: skip the first batches of the stream (resuming a run): the same batches as an
  uninterrupted run from there on, skipped before decoding, so skipping is cheap.
  """
  tf = _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _builder(data_config, split, in_channels, out_channels)
  features = builder.info.features
  stored = (features['a'].shape[-1], features['b'].shape[-1])
  a_wanted, b_wanted = ((in_channels, out_channels) if data_config.direction == 'AtoB'
                        else (out_channels, in_channels))
  for have, want, which in ((stored[0], a_wanted, 'A'), (stored[1], b_wanted, 'B')):
    if have < want:
      raise DataError(f'{data_config.dataset}: {which} images have {have} channel(s) but the '
                      f'model wants {want} (model.in_channels/out_channels, data.direction)')
  if process_index is None or process_count is None:
    process_index, process_count = parallel.process_index(), parallel.process_count()
  options = tf.data.Options()
  options.deterministic = True
  # Parallelism comes from the parallel map; one thread per op leaves cores to JAX.
  options.threading.max_intra_op_parallelism = 1
  ds = builder.as_dataset(
      split=tfds.split_for_jax_process(split, process_index=process_index,
                                       process_count=process_count, drop_remainder=train),
      shuffle_files=train,
      decoders={'a': tfds.decode.SkipDecoding(), 'b': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=seed, options=options))
  if train:
    # Shuffle, then repeat: every example once per epoch (when the buffer holds the split),
    # as PyTorch's sampler does; a seeded reshuffle gives each epoch a new, fixed order.
    ds = ds.shuffle(data_config.shuffle_buffer, seed=seed * 1000003 + process_index,
                    reshuffle_each_iteration=True)
    ds = ds.repeat()
  ds = ds.enumerate()  # Stream position: part of the jitter key.
  if start_batch:
    ds = ds.skip(start_batch * batch_size)

  def jitter_and_scale(i, example):
    key = tf.stack([tf.constant(seed, tf.int64), tf.constant(process_index, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, i)
    return preprocess(example, key, data_config=data_config, train=train,
                      in_channels=in_channels, out_channels=out_channels,
                      stored_channels=stored)

  ds = ds.map(jitter_and_scale, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train)
  return ds.prefetch(tf.data.AUTOTUNE)


def numpy_batches(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                  process_index: int | None = None, process_count: int | None = None,
                  in_channels: int = 3, out_channels: int = 3,
                  start_batch: int = 0) -> Iterator[dict]:
  """`create_dataset` as numpy: float32 'input'/'target' in [-1, 1], bytes 'name'."""
  ds = create_dataset(data_config, split, batch_size=batch_size, train=train, seed=seed,
                      process_index=process_index, process_count=process_count,
                      in_channels=in_channels, out_channels=out_channels,
                      start_batch=start_batch)
  for batch in ds.as_numpy_iterator():
    yield {'input': np.asarray(batch['input'], np.float32),
           'target': np.asarray(batch['target'], np.float32),
           'name': batch['name']}
