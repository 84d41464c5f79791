"""Workdirs: a writable folder is proven before training, not at the first save."""

import os

import pytest

from p2p_jax import checkpointing as C
from p2p_jax import workdirs


def test_check_writable(tmp_path):
  target = tmp_path / 'new' / 'checkpoints'
  workdirs.check_writable(target)
  assert target.is_dir() and not os.listdir(target)          # created, probe removed
  (tmp_path / 'file').write_text('x')
  with pytest.raises(C.CheckpointError, match=str(tmp_path / 'file' / 'ckpt')):
    workdirs.check_writable(tmp_path / 'file' / 'ckpt')      # cannot create the directory
  # Every write to the probe file: ENOSPC.
  os.symlink('/dev/full', workdirs._probe_path(workdirs.epath.Path(target)))
  with pytest.raises(C.CheckpointError, match='No space left on device'):
    workdirs.check_writable(target)
  with pytest.raises(C.CheckpointError, match='MiB free'):
    workdirs.check_writable(target, min_free_bytes=2**60)
  with pytest.raises(C.CheckpointError, match='not writable'):
    workdirs.check_writable(tmp_path / 'file' / 'ckpt')
