"""Input pipeline of pix2pix: the config's prepared TFDS dataset -> jittered batches (numpy).

Examples are read by index from TFDS's ArrayRecord files (datasets/records.py) and batched
on Grain by p2p_jax/batches.py (sampling, seeds, worker processes, resume; it also serves
CycleGAN's unpaired and pix2pixHD's labelled data: `labelled_batches`), so training and
evaluation never import TensorFlow. The trainer consumes `numpy_batches` (any iterator of
{'input', 'target', 'name'} numpy dicts does as well, e.g. a synthetic one).

Per example, as the paper and the PyTorch reference (Isola et al. 2017, section 6.2;
jitter.Paired): A and B (uint8) -> resize each to load_size x load_size
(config.data.resize_method, bicubic by default, with Pillow's filters on the 8-bit image
exactly as the reference's transforms.Resize: antialiased when shrinking) -> one random
crop_size crop and one random horizontal flip, the same for A and B -> scale [0, 255] to
[-1, 1] -> input and target by direction. Evaluation (train=False): resize straight to
crop_size; no crop, no flip, one pass in a fixed order.

The stream (STREAM_VERSION 2, Grain): every epoch visits this process's share of the split
once, in an order Grain's index shuffle draws from the seed anew every epoch; example p of
the stream is jittered by a generator seeded with (seed, process, p). A seed fixes the run,
and a run resumed at step k reads batch k next, exactly as if it had never stopped (nothing
to save but the step; the checkpoint records `stream_descriptor` so that a change is
noticed). Version 1 (the thread pool before Grain) drew other orders and crops: runs
started with it continue on version 2 (`resume_notice`).
Multi-host: each process reads its own, disjoint, contiguous share of the split (training:
equal shares, the remainder dropped; evaluation: the remainder kept) and `batch_size` is
the per-process batch.
Workers: config.data.workers processes prepare batches (-1: `batches.default_workers`: none
on a CPU-only run, the cores minus one with an accelerator); evaluation reads with threads
(a pass over a validation split is shorter than starting workers).
Resized once: with config.data.resized_cache (-1: when worker processes are used and it
takes at most RESIZED_AUTO_GB) the train split is resized to load_size once and kept as raw
arrays beside the prepared data (datasets/resized.py): the same batches for far less CPU.
"""

import shutil
from typing import Iterator

from p2p_jax import batches, jitter, parallel
from p2p_jax.datasets import catalog
from p2p_jax.datasets.catalog import DataError

# config.data.direction: which half is the input; config.data.resize_method: the filter.
DIRECTIONS = ('AtoB', 'BtoA')
RESIZE_METHODS = jitter.RESIZE_METHODS
# config.data.resize_or_crop (pix2pixHD's option of that name; `geometry`).
RESIZE_OR_CROP = ('resize_and_crop', 'scale_width', 'scale_width_and_crop', 'crop', 'none')
STREAM_VERSION = 2
RESIZED_AUTO_GB = 16  # the largest resized copy config.data.resized_cache=-1 makes
process_share = batches.share  # This process's contiguous share of n examples.


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


def _unpaired_builder(data_config, split: str, in_channels: int, out_channels: int):
  """The prepared unpaired builder (datasets/unpaired.py), after checking that it has the
  two domains of `split` (`<split>A`, `<split>B`)."""
  from p2p_jax.datasets import unpaired  # pylint: disable=g-import-not-at-top
  builder = unpaired.prepare(data_config, in_channels=in_channels, out_channels=out_channels)
  splits = builder.info.splits
  if f'{split}A' not in splits or f'{split}B' not in splits:
    have = sorted({s[:-1] for s in splits})
    raise DataError(f'{data_config.dataset}: no split {split!r} ({split}A/ and {split}B/); '
                    f'it has {", ".join(have)} (config.data.train_split / eval_split)')
  return builder


def _labelled_builder(data_config, split: str, in_channels: int, out_channels: int,
                      label_nc: int, instance_map: bool):
  """The prepared labelled builder (datasets/labelled.py), after checking that it has
  `split`."""
  from p2p_jax.datasets import labelled  # pylint: disable=g-import-not-at-top
  builder = labelled.prepare(labelled.with_labels(data_config, label_nc, instance_map),
                             in_channels=in_channels, out_channels=out_channels)
  if split not in builder.info.splits:
    raise DataError(f'{data_config.dataset}: no split {split!r}; it has '
                    f'{", ".join(sorted(builder.info.splits))} (config.data.train_split / '
                    'eval_split)')
  return builder


def _reads_unpaired(data_config, data_kind: str) -> bool:
  return catalog.is_unpaired(data_config.dataset, data_kind)


def _check_labels(data_config, data_kind: str) -> None:
  if data_kind == 'labels' and not catalog.is_labelled(data_config.dataset, data_kind):
    raise DataError(f'config.data.dataset {data_config.dataset!r} has no label maps; '
                    'pix2pixhd with label_nc > 0 or instance_map reads cityscapes (gtFine + '
                    'leftImg8bit) or label_folders (train_label/ train_inst/ train_img/); '
                    'label_nc 0 without instance_map trains on paired images')


def geometry(data_config, train: bool, multiple: int = 1) -> jitter.Geometry:
  """Where config.data puts every image of an example (jitter.Geometry), by
  config.data.resize_or_crop as pix2pixHD's option of that name (data/base_dataset.py):
  'resize_and_crop' (pix2pix and CycleGAN) load_size x load_size, a random crop_size
  window; 'scale_width' width load_size, aspect kept, no crop; 'scale_width_and_crop' that
  and a crop_size window; 'crop' a window of the stored size; 'none' the stored size,
  rounded to `multiple` (the generator's). Flipped at random with data.flip. Evaluation
  (train=False): no flip, the centred window; 'resize_and_crop' resizes straight to
  crop_size as before."""
  mode = data_config.get('resize_or_crop', 'resize_and_crop')
  if mode == 'resize_and_crop':
    return (jitter.Geometry(data_config.load_size, data_config.crop_size, data_config.flip)
            if train else jitter.Geometry(data_config.crop_size))
  scale = 'width' if mode.startswith('scale_width') else 'none'
  crop = data_config.crop_size if mode.endswith('crop') else None
  return jitter.Geometry(data_config.load_size, crop, bool(train and data_config.flip), scale,
                         multiple if mode == 'none' else 1)


def train_size(data_config) -> tuple[int, int]:
  """(height, width) of the training images, as the step is compiled for before the first
  batch: crop_size x crop_size, or with no crop (scale_width, none) crop_size x load_size
  (Cityscapes at scale_width 1024: 512 x 1024). Images of another size are compiled for
  at their first batch."""
  mode = data_config.get('resize_or_crop', 'resize_and_crop')
  if mode in ('scale_width', 'none'):
    return data_config.crop_size, data_config.load_size
  return data_config.crop_size, data_config.crop_size


def num_examples(data_config, split: str, *, in_channels: int = 3,
                 out_channels: int = 3, data_kind: str = 'paired', label_nc: int = 0,
                 instance_map: bool = False, size_multiple: int = 1) -> int:
  """Examples in `split` over all processes (prepares the dataset if needed); for an
  unpaired dataset, an epoch's: the larger domain's. label_nc, instance_map: how a
  labelled dataset is read (the method's `pipeline_options`; size_multiple unused)."""
  del size_multiple
  _check_labels(data_config, data_kind)
  if catalog.is_labelled(data_config.dataset, data_kind):
    return _labelled_builder(data_config, split, in_channels, out_channels, label_nc,
                             instance_map).info.splits[split].num_examples
  if _reads_unpaired(data_config, data_kind):
    splits = _unpaired_builder(data_config, split, in_channels, out_channels).info.splits
    return max(splits[f'{split}A'].num_examples, splits[f'{split}B'].num_examples)
  return _builder(data_config, split, in_channels, out_channels).info.splits[split].num_examples


def worker_count(data_config) -> int:
  """config.data.workers, with -1 resolved for this host (batches.default_workers)."""
  if data_config.workers >= 0:
    return data_config.workers
  return batches.default_workers(parallel.accelerated())


def _keep_resized(data_config, builder_dir: str, n: int, workers: int, a_channels: int,
                  b_channels: int) -> bool:
  """config.data.resized_cache: 1 always, 0 never, -1 when the pipeline uses worker
  processes (by default only with an accelerator, where the CPU per image counts) and the
  copy takes at most RESIZED_AUTO_GB and leaves a GiB of the disk free."""
  from p2p_jax.datasets import resized  # pylint: disable=g-import-not-at-top
  if data_config.resized_cache >= 0:
    return bool(data_config.resized_cache)
  need = resized.nbytes(n, data_config.load_size, a_channels, b_channels)
  try:
    free = shutil.disk_usage(builder_dir).free
  except OSError:
    return False
  return workers > 0 and need <= RESIZED_AUTO_GB * 2**30 and need + 2**30 <= free


def numpy_batches(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                  process_index: int | None = None, process_count: int | None = None,
                  in_channels: int = 3, out_channels: int = 3, start_batch: int = 0,
                  workers: int | None = None, data_kind: str = 'paired', label_nc: int = 0,
                  instance_map: bool = False, size_multiple: int = 1) -> Iterator[dict]:
  """Batches {'input': [B,H,W,Cin], 'target': [B,H,W,Cout] float32, 'name': [B] bytes}.

  train=True: shuffled per epoch, jittered, endless, full batches only. train=False: no
  jitter, one pass in a fixed order, last batch possibly smaller. `batch_size` is per
  process; process_index/process_count default to JAX's. Prepares the dataset if needed.
  start_batch: begin at this batch of the stream (resuming a run): the same batches as an
  uninterrupted run from there on. workers: worker processes (default: training
  `worker_count(data_config)`, evaluation 0). The result has `close()`, which stops its workers.
  data_kind: the method's ('paired', 'unpaired': see `unpaired_batches`; 'labels' and your
  label folders: see `labelled_batches`, with label_nc, instance_map, size_multiple).
  """
  from p2p_jax.datasets import records, resized  # pylint: disable=g-import-not-at-top
  _check_labels(data_config, data_kind)
  if catalog.is_labelled(data_config.dataset, data_kind):
    return labelled_batches(
        data_config, split, batch_size=batch_size, train=train, seed=seed,
        process_index=process_index, process_count=process_count, in_channels=in_channels,
        out_channels=out_channels, start_batch=start_batch, workers=workers,
        label_nc=label_nc, instance_map=instance_map, size_multiple=size_multiple)
  if data_kind == 'unpaired' and (train or _reads_unpaired(data_config, data_kind)):
    return unpaired_batches(
        data_config, split, batch_size=batch_size, train=train, seed=seed,
        process_index=process_index, process_count=process_count, in_channels=in_channels,
        out_channels=out_channels, start_batch=start_batch, workers=workers)
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
  if workers is None:
    workers = worker_count(data_config) if train else 0
  transform = jitter.Paired(geometry(data_config, train), data_config.resize_method,
                            a_wanted, b_wanted, a_to_b=data_config.direction == 'AtoB')
  source = records.TfdsRecords(builder.data_dir, split,
                               builder.info.splits[split].num_examples)
  if train and data_config.get('resize_or_crop', 'resize_and_crop') == 'resize_and_crop' and (
      _keep_resized(data_config, builder.data_dir, len(source), workers, a_wanted,
                    b_wanted)):
    size, method = data_config.load_size, data_config.resize_method
    source = resized.build(
        source, resized.folder_for(builder.data_dir, split, size, method, a_wanted,
                                   b_wanted),
        size=size, method=method, a_channels=a_wanted, b_channels=b_wanted, workers=workers,
        label=f'{data_config.dataset}/{split}') or source
  try:
    return batches.batch_iterator(
        (source,), transform, batch_size=batch_size, train=train, seed=seed,
        start_batch=start_batch, workers=workers, prefetch=data_config.prefetch,
        process_index=process_index, process_count=process_count)
  except DataError as e:
    raise DataError(f'{data_config.dataset}/{split}: {e}') from None


def labelled_batches(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                     process_index: int | None = None, process_count: int | None = None,
                     in_channels: int = 3, out_channels: int = 3, start_batch: int = 0,
                     workers: int | None = None, label_nc: int = 35, instance_map: bool = True,
                     size_multiple: int = 1):
  """pix2pixHD's batches {'label' [B, H, W] ids (uint8 for label_nc <= 256, else int32;
  or with label_nc 0 'input' [B, H, W, Cin] float32), 'instance' [B, H, W] int32 (with
  instance_map), 'target' [B, H, W, Cout] float32, 'name'} from a labelled dataset
  (datasets/labelled.py: cityscapes, label_folders).

  The stream is pix2pix's (one record per position, shuffled per epoch, each example's
  draws from (seed, process, position); resumable at any batch), and so are its
  arguments. Per example (jitter.Labelled): `geometry(data_config, train, size_multiple)`
  with one window and one flip for label, instance map and photo; label and instance maps
  resized NEAREST and never scaled, images with config.data.resize_method.
  """
  from p2p_jax.datasets import records  # pylint: disable=g-import-not-at-top
  builder = _labelled_builder(data_config, split, in_channels, out_channels, label_nc,
                              instance_map)
  if process_index is None or process_count is None:
    process_index, process_count = parallel.process_index(), parallel.process_count()
  if workers is None:
    workers = worker_count(data_config) if train else 0
  transform = jitter.Labelled(geometry(data_config, train, size_multiple),
                              data_config.resize_method, size_multiple if train else 1)
  source = records.TfdsRecords(builder.data_dir, split, builder.info.splits[split].num_examples)
  try:
    return batches.batch_iterator(
        (source,), transform, batch_size=batch_size, train=train, seed=seed,
        start_batch=start_batch, workers=workers, prefetch=data_config.prefetch,
        process_index=process_index, process_count=process_count)
  except DataError as e:
    raise DataError(f'{data_config.dataset}/{split}: {e}') from None


class _OneAfterTheOther:
  """Iterates `parts` (Batches) one after the other; `close()` closes them all."""

  def __init__(self, parts):
    self.parts = parts

  def __iter__(self):
    for part in self.parts:
      yield from part

  def close(self):
    for part in self.parts:
      part.close()


def unpaired_batches(data_config, split: str, *, batch_size: int, train: bool, seed: int,
                     process_index: int | None = None, process_count: int | None = None,
                     in_channels: int = 3, out_channels: int = 3, start_batch: int = 0,
                     workers: int | None = None):
  """CycleGAN's batches {'input': domain A, 'target': domain B, 'name'} (A and B by
  config.data.direction, as the reference's set_input).

  Domains: the `<split>A` / `<split>B` splits of an unpaired dataset, or the A and B sides
  of a paired one (config.data.pairs_as_unpaired). Training: an epoch is max(|A|, |B|)
  examples, A in a shuffled order, a uniformly drawn B for each, each image with its own
  crop and flip (batches.py's 'unpaired' sampling, the reference's UnalignedDataset).
  Evaluation of an unpaired dataset: every A image once as 'input' batches, then every B
  image once as 'target' batches (no pairs to form); of a paired one, its pairs.
  """
  from p2p_jax.datasets import records  # pylint: disable=g-import-not-at-top
  if process_index is None or process_count is None:
    process_index, process_count = parallel.process_index(), parallel.process_count()
  if workers is None:
    workers = worker_count(data_config) if train else 0
  if _reads_unpaired(data_config, 'unpaired'):
    builder = _unpaired_builder(data_config, split, in_channels, out_channels)
    domains = [records.TfdsRecords(builder.data_dir, f'{split}{d}',
                                   builder.info.splits[f'{split}{d}'].num_examples)
               for d in 'AB']
  else:
    if not train:
      return numpy_batches(data_config, split, batch_size=batch_size, train=False, seed=seed,
                           process_index=process_index, process_count=process_count,
                           in_channels=in_channels, out_channels=out_channels)
    builder = _builder(data_config, split, in_channels, out_channels)
    source = records.TfdsRecords(builder.data_dir, split,
                                 builder.info.splits[split].num_examples)
    domains = [records.Field(source, 'a'), records.Field(source, 'b')]
  if data_config.direction == 'BtoA':
    domains.reverse()
  geometry = (jitter.Geometry(data_config.load_size, data_config.crop_size, data_config.flip)
              if train else jitter.Geometry(data_config.crop_size))
  common = dict(batch_size=batch_size, train=train, seed=seed, workers=workers,
                prefetch=data_config.prefetch, process_index=process_index,
                process_count=process_count)
  try:
    if train:
      return batches.batch_iterator(
          tuple(domains), jitter.Unpaired(geometry, data_config.resize_method, in_channels,
                                          out_channels),
          sampling='unpaired', start_batch=start_batch, **common)
    return _OneAfterTheOther([
        batches.batch_iterator((domain,), jitter.OneDomain(
            geometry, data_config.resize_method, channels, key), **common)
        for domain, channels, key in ((domains[0], in_channels, 'input'),
                                      (domains[1], out_channels, 'target'))])
  except DataError as e:
    raise DataError(f'{data_config.dataset}/{split}: {e}') from None


def stream_descriptor(config, process_count: int) -> dict:
  """What fixes the training stream besides the step, as saved with each checkpoint."""
  return {'version': STREAM_VERSION, 'seed': int(config.seed),
          'batch_size': int(config.batch_size), 'process_count': int(process_count),
          'dataset': str(config.data.dataset), 'train_split': str(config.data.train_split)}


def resume_notice(saved: dict | None, current: dict) -> str | None:
  """The line a resumed run prints when its checkpoint's stream (`stream_descriptor`; None
  for checkpoints of version 1, which saved none) is not the one it continues with."""
  if not saved or saved.get('version') != current['version']:
    old = (saved or {}).get('version', 1)
    return (f'p2p_jax: the checkpoint was trained on data stream {old} (an older input '
            f'pipeline); training continues on stream {current["version"]}: the same '
            'examples and jitter, in other orders and draws, so from here the run is not '
            'bit-identical to one that never stopped')
  changed = [f'{k} {saved.get(k)} -> {v}' for k, v in current.items()
             if k != 'version' and saved.get(k) != v]
  if changed:
    return ('p2p_jax: the data stream differs from the checkpoint\'s (' + ', '.join(changed)
            + '): training continues on the new one')
  return None
