"""Batches from random-access sources, on Grain: sampling, seeds, worker processes, resume.

`batch_iterator(sources, transform, sampling=..., ...)` is the one loader of every method:
pix2pix (paired records), CycleGAN (two unpaired sources) and pix2pixHD (labelled records)
differ only in their sources, their sampling and their transform (p2p_jax/jitter.py).

A source is anything with `__len__` and `__getitem__(int) -> record` (a dict of numpy
arrays and a 'name'), that reads any index in any order, from several threads at once, and
that pickles small: with workers it is pickled into each worker process, so it holds paths
and opens its files lazily in the process that reads them (datasets/records.py's TFDS
source; a list of dicts in tests). A record that cannot be read raises DataError naming the
file; raised inside a worker, it reaches the caller as the same error.

The stream (a pure function of the arguments, whatever the number of workers): stream
position p of this process (p = batch * batch_size + row) is
  paired    record share[shuffled(p)] (train: this process's contiguous share of the
            source, in an order that Grain's index shuffle draws anew every epoch);
  unpaired  A[shuffled(p) % |A|] and B[uniform draw] (an epoch is max(|A|, |B|) positions,
            A cycling when shorter, B drawn at random for each example, from all of B: the
            reference's UnalignedDataset); evaluation: A[p % |A|], B[p % |B|];
and its randomness (B's draw, then the jitter) comes from a numpy Generator seeded with
(seed, process index, p). Batch k is therefore known without reading batches 0..k-1:
resuming at step k is `start_batch=k`, no iterator state to save. Training streams are
endless and positions run on across epochs, so every batch is full (an epoch may end inside
a batch); evaluation is one pass, its last batch possibly smaller.

Workers: `workers` processes (Grain's mp_prefetch, started by Python's spawn method) each
prepare whole batches of uint8 images, handed over in shared memory; a thread of this
process scales them to float32 (a quarter of the bytes cross processes) and keeps
`prefetch` batches ready. Workers ignore SIGINT and SIGTERM (the trainer's stop request,
p2p_jax/stopping.py, decides when to stop; `close()` stops them) and exit when this process
dies, even by SIGKILL. A worker killed from outside (e.g. by a signal sent to the process
group while it was starting, before it could ignore it) is replaced and the stream goes on
unchanged; one that keeps dying is an error. workers=0 prepares batches with threads of
this process. Scripts that use workers need Python's `if __name__ == '__main__':` guard
(spawn re-imports the main module).
"""

import atexit
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from typing import Callable, Iterator, Sequence
import weakref

from absl import flags
import grain
import numpy as np

from p2p_jax import jitter
from p2p_jax.datasets.catalog import DataError

SAMPLINGS = ('paired', 'unpaired')
MAX_WORKERS = 32
_SALT = 0x9A17  # Separates these seeds from other uses of the run's seed.
_RESTARTS = 2  # Worker deaths tolerated per iterator before giving up.


def share(n: int, process_index: int, process_count: int, train: bool) -> range:
  """This process's contiguous share of n positions: training, equal shares (the remainder
  dropped); evaluation, the remainder kept (shares differ by at most one)."""
  if train:
    per = n // process_count
    return range(process_index * per, (process_index + 1) * per)
  bounds = [p * n // process_count for p in range(process_count + 1)]
  return range(bounds[process_index], bounds[process_index + 1])


def default_workers(accelerator: bool) -> int:
  """Worker processes that suit this host: on a CPU-only run none (the training step uses
  every core and needs ~1/100 of what the pipeline can deliver; workers would only add
  memory); with an accelerator the cores this process may use minus one, at most
  MAX_WORKERS."""
  if not accelerator:
    return 0
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return max(0, min((cores or 1) - 1, MAX_WORKERS))


class _Example:
  """Stream position -> example: the sampler's reads, then the transform (runs in workers)."""

  def __init__(self, sources, transform, sampling, train, seed, process_index):
    self.sources, self.transform, self.sampling = tuple(sources), transform, sampling
    self.train, self.seed, self.process_index = train, seed, process_index

  def __call__(self, position: int, index: int):
    rng = (np.random.default_rng([_SALT, self.seed, self.process_index, position])
           if self.train else None)
    if self.sampling == 'paired':
      records = (self.sources[0][int(index)],)
    else:
      a, b = self.sources
      j = int(rng.integers(len(b))) if self.train else index % len(b)
      records = (a[int(index) % len(a)], b[j])
    return self.transform(records, rng)


def _stack(examples: Sequence[dict]) -> dict:
  """Examples -> a batch: arrays stacked, names as an object array of bytes."""
  for k in examples[0]:
    shapes = {np.shape(e[k]) for e in examples} if k != 'name' else set()
    if len(shapes) > 1:
      # Possible where nothing crops (pix2pixHD's scale_width / none on images of several
      # aspect ratios): the official code trains those at batch 1.
      names = ', '.join(f'{jitter.text(e["name"])} {np.shape(e[k])}' for e in examples)
      raise DataError(f'examples of different sizes in one batch ({k}: {names}); crop them '
                      '(config.data.resize_or_crop ..._crop) or use batch_size 1')
  return {k: (np.asarray([e[k] for e in examples], dtype=object) if k == 'name' else
              np.stack([e[k] for e in examples])) for k in examples[0]}


def _hand_over(float_keys: tuple, batch: dict) -> dict:
  """A batch as the caller gets it: `float_keys` scaled from uint8 to float32 [-1, 1],
  every array in this process's own memory (a worker's batch arrives in shared memory, freed
  once released), so that nothing a caller keeps refers to shared memory."""
  return {k: jitter.to_float(v) if k in float_keys else
          np.array(v) if isinstance(v, np.ndarray) and v.dtype != object else v
          for k, v in batch.items()}


def _exit_with_parent(sentinel) -> None:
  multiprocessing.connection.wait([sentinel])
  os._exit(0)  # pylint: disable=protected-access


def _worker_init(worker_index: int, worker_count: int) -> None:
  """In each worker: stop requests are the trainer's to handle, and the worker never
  outlives the process that started it (SIGKILL included)."""
  del worker_index, worker_count
  # Libraries' notes from every worker (TFDS on OpenCV, absl INFO lines) would repeat on the
  # console; the worker's errors reach the caller as exceptions.
  logging.getLogger('absl').setLevel(logging.ERROR)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  parent = multiprocessing.parent_process()
  if parent is not None:
    threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True,
                     name='p2p_jax-exit-with-parent').start()


_OPEN = weakref.WeakSet()  # Batches not closed yet: closed at exit, before Python tears down


@atexit.register
def _close_open_batches():
  for it in list(_OPEN):
    it.close()


class Batches(Iterator[dict]):
  """The batches of `batch_iterator`; `close()` (or `with`) stops the workers at once (an
  iterator left open is closed when Python exits)."""

  def __init__(self, make: Callable[[int], Iterator[dict]], start_batch: int, workers: int):
    self._make, self._next, self.workers = make, start_batch, workers
    self._deaths = 0
    self._it = make(start_batch)
    _OPEN.add(self)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while True:
      try:
        batch = next(self._it)
      except RuntimeError as e:
        # Grain's words for a worker process that died (a signal, the OOM killer, a crash).
        if 'terminated unexpectedly' not in str(e) or self.workers == 0:
          raise
        self._deaths += 1
        if self._deaths > _RESTARTS:
          self.close()
          raise RuntimeError(
              f'input pipeline: a worker process died {self._deaths} times ({e}); its '
              "output above says why (in a script, the `if __name__ == '__main__':` guard "
              "is missing? Python's spawn re-imports the main module; out of memory?). "
              'config.data.workers=0 prepares the data in this process') from e
        logging.warning('input pipeline: a worker process died (%s); starting the workers '
                        'again at batch %d (same stream)', e, self._next)
        self._it.close()
        self._it = self._make(self._next)
        continue
      self._next += 1
      return batch

  def close(self) -> None:
    """Stops the workers (and threads) now; idempotent."""
    _OPEN.discard(self)
    it, self._it = self._it, iter(())
    close = getattr(it, 'close', None)
    if close is not None:
      close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def batch_iterator(sources: Sequence, transform: Callable, *, sampling: str = 'paired',
                   batch_size: int, train: bool, seed: int, start_batch: int = 0,
                   workers: int = 0, prefetch: int = 2, process_index: int = 0,
                   process_count: int = 1) -> Batches:
  """Batches of `transform`'s examples, stacked: {key: [B, ...] array, 'name': [B] object}.

  sources: (source,) for sampling='paired', (A, B) for 'unpaired' (see the module
    docstring for what a source provides and how positions are sampled).
  transform: (records tuple, rng or None) -> example dict of numpy arrays and 'name'
    (jitter.Paired, Unpaired, Labelled); picklable (it goes to the workers). The keys in
    its `float_keys` attribute hold uint8 images, scaled to float32 [-1, 1] here.
  train: True: shuffled, jittered (rng given), endless, full batches. False: one pass in a
    fixed order, rng None, the last batch possibly smaller.
  seed: the run's seed; with process_index, batch_size and the sources' lengths it fixes
    every batch. start_batch: the first batch delivered (resuming: the step).
  workers: worker processes (0: threads of this process); prefetch: batches kept ready.
  process_index / process_count: this process's share of the positions (multi-host);
    batch_size is per process.
  Raises DataError when this process's share is empty.
  """
  if sampling not in SAMPLINGS:
    raise ValueError(f'sampling must be one of {SAMPLINGS}, got {sampling!r}')
  if len(sources) != (1 if sampling == 'paired' else 2):
    raise ValueError(f"sampling={sampling!r} takes {1 if sampling == 'paired' else 2} "
                     f'source(s), got {len(sources)}')
  n = len(sources[0]) if sampling == 'paired' else max(len(s) for s in sources)
  positions = share(n, process_index, process_count, train)
  if not len(positions):
    raise DataError(f'no examples for process {process_index} of {process_count} '
                    f'({n} in all)')
  ds = grain.MapDataset.range(positions.start, positions.stop)
  if train:
    order_seed = int(np.random.default_rng([_SALT, seed, process_index, 1]).integers(2**31))
    ds = ds.shuffle(seed=order_seed).repeat()
  ds = ds.map_with_index(_Example(sources, transform, sampling, train, seed, process_index))
  ds = ds.batch(batch_size, drop_remainder=train, batch_fn=_stack)
  threads = max(1, min(4, os.cpu_count() or 1))

  hand_over = functools.partial(_hand_over, tuple(getattr(transform, 'float_keys', ())))

  def make(first: int):
    if workers:
      if not flags.FLAGS.is_parsed():
        # Grain 0.2.18 reads an absl flag when it starts workers, which fails where nobody
        # parsed flags (notebooks, tests); fixed in google/grain#1362.
        flags.FLAGS.mark_as_parsed()
      it = ds[first:].to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                       per_worker_buffer_size=2),
                          worker_init_fn=_worker_init)
    else:
      it = ds[first:].to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                        prefetch_buffer_size=threads))
    # Handing over (scaling, copying out of shared memory) runs in a thread of its own, a
    # few batches ahead of the caller.
    return iter(grain.experimental.ThreadPrefetchIterDataset(
        it.map(hand_over), prefetch_buffer_size=max(prefetch, 1)))

  return Batches(make, start_batch, workers)
