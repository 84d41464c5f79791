"""A prepared TFDS split as a source for p2p_jax/batches.py: records by index, no TensorFlow.

`TfdsRecords(builder_dir, split)` reads the ArrayRecord files TFDS prepared (file format
ARRAY_RECORD) through TFDS's data source (`builder.as_data_source`, decoding with numpy and
Pillow). It pickles as its folder and split, and opens the files in the process that reads
them (a worker process of the input pipeline opens its own readers). A record that cannot be
read (a damaged or truncated file) raises DataError naming the file and the fix.
"""

import bisect
import os
import threading

from p2p_jax.datasets.catalog import DataError


class TfdsRecords:
  """Records {feature: numpy value} of one split of a prepared TFDS dataset."""

  def __init__(self, builder_dir: str, split: str, num_examples: int | None = None):
    """builder_dir: the prepared version folder (builder.data_dir, holding
    dataset_info.json). num_examples: the split's size, if known (saves reading it)."""
    self.builder_dir, self.split = os.fspath(builder_dir), split
    self._length = num_examples
    self._source = None
    self._files = None  # [(first index, file name)]
    self._lock = threading.Lock()

  def __getstate__(self):
    return {'builder_dir': self.builder_dir, 'split': self.split, 'length': len(self)}

  def __setstate__(self, state):
    self.__init__(state['builder_dir'], state['split'], state['length'])

  def _open(self):
    with self._lock:
      if self._source is None:
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
        from tensorflow_datasets.core.data_sources import base  # pylint: disable=g-import-not-at-top
        builder = tfds.builder_from_directory(self.builder_dir)
        first, files = 0, []
        for instruction in base.file_instructions(builder.info, self.split):
          files.append((first, instruction.filename))
          first += instruction.take
        self._files = files
        self._source = builder.as_data_source(split=self.split)
    return self._source

  def __len__(self) -> int:
    if self._length is None:
      self._length = len(self._open())
    return self._length

  def file_of(self, index: int) -> str:
    """The ArrayRecord file that holds record `index`."""
    self._open()
    starts = [first for first, _ in self._files]
    return self._files[max(bisect.bisect_right(starts, index) - 1, 0)][1]

  def __getitem__(self, index: int) -> dict:
    try:
      return self._open()[index]
    except DataError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # array_record, protobuf, Pillow
      where = self._where(index)
      detail = str(e).splitlines()[0][:300] if str(e) else ''
      raise DataError(f'{where}: cannot read record {index} of split {self.split!r} '
                      f'({type(e).__name__}: {detail}); the prepared dataset is damaged: '
                      f'delete {self.builder_dir} to prepare it again') from e

  def _where(self, index: int) -> str:
    try:
      return self.file_of(index)
    except Exception:  # pylint: disable=broad-except  # the folder itself is unreadable
      return self.builder_dir


class Field:
  """One image field of a source's records as {'image', 'name'} records: the A or B side of
  a paired dataset read as one unpaired domain (CycleGAN's config.data.pairs_as_unpaired).
  Pickles as its source and field name."""

  def __init__(self, source, field: str):
    self.source, self.field = source, field

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    record = self.source[index]
    return {'image': record[self.field], 'name': record['name']}
