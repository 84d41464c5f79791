"""Input pipeline: prepared TFDS examples -> jittered, scaled, batched pairs, as numpy.

Examples come from a TFDS data source (`builder.as_data_source`: random access into the
prepared ArrayRecord files, decoded to numpy by TFDS), so training and evaluation never
import TensorFlow: it would add ~0.7 GB to the trainer's memory and seconds to its start,
and clash with a preinstalled TensorFlow or take GPU memory. The trainer just consumes
`numpy_batches` (any iterator of {'input', 'target', 'name'} numpy dicts does as well, e.g.
a synthetic one).

Per example, as the paper and the PyTorch reference (Isola et al. 2017, section 6.2):
  A and B (uint8) -> resize each to load_size x load_size (config.data.resize_method,
  bicubic by default, with Pillow's filters on the 8-bit image exactly as the reference's
  transforms.Resize: antialiased when shrinking) -> one random crop_size crop and one random
  horizontal flip, the same for A and B -> scale [0, 255] to [-1, 1] -> input and target
  by direction. Evaluation (train=False): resize straight to crop_size; no crop, no
  flip, one pass in a fixed order.

Determinism: example i of the stream (its position counted from the start of training) is
drawn and jittered from numpy generators keyed by (seed, process, epoch) and (seed,
process, i), so a seed gives the same batches every run and a resumed run continues the
same stream (`start_batch`, no reading to skip). Every epoch visits each example once in a
new order, as PyTorch's shuffling sampler does.
Multi-host: each process reads its own, disjoint, contiguous share of the split (training:
equal shares, the remainder dropped; evaluation: the remainder kept, so shares differ by at
most one example) and `batch_size` is the per-process batch.
Throughput: examples are decoded and jittered by a pool of threads (Pillow and numpy
release the GIL) while the step runs; a few batches are prepared ahead.
"""

import concurrent.futures
import functools
import os
from typing import Iterator

import numpy as np
from PIL import Image

from p2p_jax import parallel
from p2p_jax.datasets.catalog import DataError

# config.data.direction: which half is the input; config.data.resize_method: the filter.
DIRECTIONS = ('AtoB', 'BtoA')
_FILTERS = {'bicubic': Image.Resampling.BICUBIC, 'bilinear': Image.Resampling.BILINEAR,
            'nearest': Image.Resampling.NEAREST, 'area': Image.Resampling.BOX}
RESIZE_METHODS = tuple(_FILTERS)
_AHEAD = 4  # batches prepared while the step runs


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


def process_share(n: int, process_index: int, process_count: int, train: bool) -> range:
  """This process's contiguous share of n examples (see module docstring)."""
  if train:
    per = n // process_count
    return range(process_index * per, (process_index + 1) * per)
  bounds = [p * n // process_count for p in range(process_count + 1)]
  return range(bounds[process_index], bounds[process_index + 1])


def _image(array: np.ndarray, channels: int) -> Image.Image:
  """A stored uint8 half as a Pillow image with `channels` (RGB -> luma: Pillow's ITU-R 601
  'L', as the reference's grayscale)."""
  image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
  return image.convert('L') if channels == 1 and image.mode != 'L' else image


def _resize(image: Image.Image, size: int, method: str) -> np.ndarray:
  """Pillow image -> uint8 [size, size, C], resized as the PyTorch reference resizes (its
  transforms.Resize on the PIL image: 8-bit in, 8-bit out)."""
  if image.size != (size, size):
    image = image.resize((size, size), _FILTERS[method])
  array = np.asarray(image)
  return array[..., None] if array.ndim == 2 else array


def preprocess(example: dict, rng: np.random.Generator | None, *, data_config,
               in_channels: int, out_channels: int) -> dict:
  """One decoded TFDS example {'a', 'b' uint8, 'name'} -> {'input', 'target', 'name'} in
  [-1, 1]. rng: the example's generator (crop and flip); None for evaluation."""
  a_channels, b_channels = in_channels, out_channels
  if data_config.direction == 'BtoA':
    a_channels, b_channels = out_channels, in_channels
  size = data_config.crop_size if rng is None else data_config.load_size
  a = _resize(_image(np.asarray(example['a']), a_channels), size, data_config.resize_method)
  b = _resize(_image(np.asarray(example['b']), b_channels), size, data_config.resize_method)
  if rng is not None:
    crop = data_config.crop_size
    top, left = rng.integers(0, size - crop + 1, size=2)
    flip = data_config.flip and rng.random() < 0.5
    a, b = (x[top:top + crop, left:left + crop][:, ::-1 if flip else 1] for x in (a, b))
  a, b = a.astype(np.float32) / 127.5 - 1.0, b.astype(np.float32) / 127.5 - 1.0
  source, target = (a, b) if data_config.direction == 'AtoB' else (b, a)
  return {'input': source, 'target': target, 'name': example['name']}


def numpy_batches(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                  process_index: int | None = None, process_count: int | None = None,
                  in_channels: int = 3, out_channels: int = 3,
                  start_batch: int = 0) -> Iterator[dict]:
  """Batches {'input': [B,H,W,Cin], 'target': [B,H,W,Cout] float32, 'name': [B] bytes}.

  train=True: shuffled per epoch, jittered, endless, full batches only. train=False: no
  jitter, one pass in a fixed order, last batch possibly smaller. `batch_size` is per
  process; process_index/process_count default to JAX's. Prepares the dataset if needed.
  start_batch: begin at this batch of the stream (resuming a run): the same batches as an
  uninterrupted run from there on.
  """
  builder = _builder(data_config, split, in_channels, out_channels)
  stored = (builder.info.features['a'].shape[-1], builder.info.features['b'].shape[-1])
  a_wanted, b_wanted = ((in_channels, out_channels) if data_config.direction == 'AtoB'
                        else (out_channels, in_channels))
  for have, want, which in ((stored[0], a_wanted, 'A'), (stored[1], b_wanted, 'B')):
    if have < want:
      raise DataError(f'{data_config.dataset}: {which} images have {have} channel(s) but the '
                      f'model wants {want} (model.in_channels/out_channels, data.direction)')
  if process_index is None or process_count is None:
    process_index, process_count = parallel.process_index(), parallel.process_count()
  source = builder.as_data_source(split=split)
  share = process_share(len(source), process_index, process_count, train)
  if not len(share):
    raise DataError(f'{data_config.dataset}/{split}: no examples for process '
                    f'{process_index} of {process_count}')

  @functools.lru_cache(maxsize=2)
  def order(epoch):
    return np.random.default_rng([seed, process_index, 1, epoch]).permutation(len(share))

  def example(position):
    """(index into the split, rng of its jitter) of stream position `position`."""
    if not train:
      return share[position], None
    epoch, j = divmod(position, len(share))
    return share[order(epoch)[j]], np.random.default_rng([seed, process_index, 0, position])

  def load(position):
    index, rng = example(position)
    return preprocess(source[int(index)], rng, data_config=data_config,
                      in_channels=in_channels, out_channels=out_channels)

  def batch_at(k):
    first = k * batch_size
    last = first + batch_size if train else min(first + batch_size, len(share))
    return [pool.submit(load, p) for p in range(first, last)]

  def stack(futures):
    examples = [f.result() for f in futures]
    return {'input': np.stack([e['input'] for e in examples]).astype(np.float32),
            'target': np.stack([e['target'] for e in examples]).astype(np.float32),
            'name': np.asarray([e['name'] for e in examples], dtype=object)}

  n_batches = None if train else -(-len(share) // batch_size)
  with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    ahead, k = [], start_batch
    while True:
      while len(ahead) < _AHEAD and (n_batches is None or k < n_batches):
        ahead.append(batch_at(k))
        k += 1
      if not ahead:
        return
      yield stack(ahead.pop(0))
