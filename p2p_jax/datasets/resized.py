"""Paired images resized to load_size once, kept as raw uint8 arrays beside the prepared data.

Resizing to load_size has no randomness: every epoch would decode the same PNGs and resize
them the same way. Done once, it leaves the input pipeline a crop, a flip and a copy per
example: about 7x less CPU per image (benchmarks/README.md, Input pipeline), which is what
lets a host feed an accelerator. The arrays are the output of the pipeline's own resize
(jitter.resize, Pillow on the 8-bit image), so batches are bit-identical with or without
them (tests/test_resized.py).

Layout: <prepared version folder>/p2p_jax_resized/<split>_<load>_<method>_c<A><B>/
{a.npy, b.npy, names.npy}, memory-mapped by every process that reads them (the pages are
shared through the page cache). Written into a temporary folder (<name>.tmp-<host>-<pid>-*,
removed by the next build on that host if its process died) and renamed when complete;
deleting the prepared folder (as any message about a damaged dataset says) deletes them too.
Size: N x load_size^2 x (A + B channels) bytes (facades at 286: 196 MB; cityscapes 1.5 GB;
edges2handbags 67 GB).
"""

import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import threading

import numpy as np

from p2p_jax import jitter

FOLDER = 'p2p_jax_resized'


@dataclasses.dataclass(frozen=True)
class _Resize:
  """Record -> A and B at load_size (with the model's channels), nothing random."""
  size: int
  method: str
  a_channels: int
  b_channels: int

  def __call__(self, records, rng):
    del rng
    record, = records
    return {'a': jitter.resize(np.asarray(record['a']), (self.size, self.size), self.method,
                               self.a_channels),
            'b': jitter.resize(np.asarray(record['b']), (self.size, self.size), self.method,
                               self.b_channels),
            'name': record['name']}


class ResizedRecords:
  """Records {'a', 'b', 'name'} of a split resized once (a source for p2p_jax/batches.py)."""

  def __init__(self, folder: str):
    self.folder = folder
    self._arrays = None
    # The pipeline's threads ask for records at once; one of them opens the arrays (numpy's
    # header parse, ast.literal_eval, is not thread-safe in CPython 3.11: "AST constructor
    # recursion depth mismatch" seen in CI).
    self._lock = threading.Lock()
    self._length = len(np.load(os.path.join(folder, 'names.npy'), mmap_mode='r'))

  def __getstate__(self):
    return {'folder': self.folder}

  def __setstate__(self, state):
    self.__init__(state['folder'])

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dict:
    if self._arrays is None:
      with self._lock:
        if self._arrays is None:
          self._arrays = [np.load(os.path.join(self.folder, f), mmap_mode='r')
                          for f in ('a.npy', 'b.npy', 'names.npy')]
    a, b, names = self._arrays
    return {'a': a[index], 'b': b[index], 'name': bytes(names[index])}


def folder_for(builder_dir: str, split: str, size: int, method: str, a_channels: int,
               b_channels: int) -> str:
  return os.path.join(builder_dir, FOLDER,
                      f'{split}_{size}_{method}_c{a_channels}{b_channels}')


def nbytes(n: int, size: int, a_channels: int, b_channels: int) -> int:
  return n * size * size * (a_channels + b_channels)


def _remove_abandoned(parent: str) -> None:
  """Removes the temporary folders of builds on this host whose process is gone (killed
  while writing); those of other hosts (a shared file system) are left alone."""
  host = socket.gethostname()
  for name in os.listdir(parent):
    owner = name.partition('.tmp-')[2]
    if owner.startswith(f'{host}-'):
      pid = owner[len(host) + 1:].split('-')[0]
      if pid.isdigit() and not os.path.exists(f'/proc/{pid}'):
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def build(source, folder: str, *, size: int, method: str, a_channels: int, b_channels: int,
          workers: int, label: str) -> ResizedRecords | None:
  """The resized copy of `source` in `folder`, made now if it is not there (with `workers`
  worker processes). None, with a warning, where it cannot be written (a read-only folder,
  a full disk): the pipeline then resizes on the fly, to the same result."""
  if os.path.isdir(folder):
    return ResizedRecords(folder)
  from p2p_jax import batches  # pylint: disable=g-import-not-at-top  (imports this module)
  n = len(source)
  print(f'p2p_jax: resizing {label} to {size}x{size} once ({n} pairs, '
        f'{nbytes(n, size, a_channels, b_channels) / 2**20:,.0f} MiB in {folder}; later runs '
        'reuse it)', flush=True)
  parent = os.path.dirname(folder)
  tmp = None
  try:
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned(parent)
    tmp = tempfile.mkdtemp(prefix=f'{os.path.basename(folder)}.tmp-{socket.gethostname()}-'
                           f'{os.getpid()}-', dir=parent)
    a = np.lib.format.open_memmap(os.path.join(tmp, 'a.npy'), 'w+', np.uint8,
                                  (n, size, size, a_channels))
    b = np.lib.format.open_memmap(os.path.join(tmp, 'b.npy'), 'w+', np.uint8,
                                  (n, size, size, b_channels))
    names, i = [], 0
    with batches.batch_iterator((source,), _Resize(size, method, a_channels, b_channels),
                                batch_size=16, train=False, seed=0,
                                workers=workers) as resized:
      for batch in resized:
        k = len(batch['name'])
        a[i:i + k], b[i:i + k] = batch['a'], batch['b']
        names += list(batch['name'])
        i += k
    a.flush()
    b.flush()
    del a, b
    np.save(os.path.join(tmp, 'names.npy'), np.asarray(names, dtype=bytes))
    try:
      os.rename(tmp, folder)
      tmp = None
    except OSError:
      if not os.path.isdir(folder):  # not another process that finished first
        raise
    return ResizedRecords(folder)
  except OSError as e:
    logging.warning('cannot keep resized images in %s (%s); resizing them every epoch '
                    'instead (same batches)', folder, e)
    return None
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)
