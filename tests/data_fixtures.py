"""Tiny datasets made on the fly for the data tests (no network, a few KB each)."""

import os
import tarfile
import zlib

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_config(data_dir, **overrides):
  """The default `config.data`, offline, writing into `data_dir`."""
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
  config = config_schema.get_config().data
  config.data_dir = str(data_dir)
  config.download = False  # Never touch the network in tests.
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def texture(seed: int, size: int = 32, channels: int = 3) -> np.ndarray:
  """A random, smooth, non-symmetric uint8 image: any misaligned crop or flip shows."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (size // 4, size // 4, channels))
  image = np.kron(coarse, np.ones((4, 4, 1)))  # Blocks survive resizing recognisably.
  image += np.linspace(0, 40, size)[None, :, None]  # A left-right gradient.
  return np.clip(image, 0, 255).astype(np.uint8)


def save(path, array: np.ndarray, **kwargs) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  mode = 'L' if array.ndim == 2 or array.shape[-1] == 1 else 'RGB'
  Image.fromarray(array.squeeze(-1) if array.ndim == 3 and mode == 'L' else array,
                  mode).save(path, **kwargs)
  return str(path)


def save_pair(path, a: np.ndarray, b: np.ndarray) -> str:
  """Writes A|B side by side."""
  return save(path, np.concatenate([a, b], axis=1))


def aligned_folder(root, splits=None, size: int = 32, ext: str = 'png') -> str:
  """root/<split>/<i>.<ext>, each A|B with B = 255 - A (so scaled, target == -input)."""
  splits = splits or {'train': 4, 'test': 2}
  for split, count in splits.items():
    for i in range(count):
      a = texture(zlib.crc32(f'{split}/{i}'.encode()), size)
      save_pair(os.path.join(root, split, f'{i}.{ext}'), a, 255 - a)
  return str(root)


def paired_folder(root, splits=('train',), count: int = 3, size: int = 32,
                  a_gray: bool = False) -> str:
  """root/A[/split]/<i>.png and root/B[/split]/<i>.jpg (same stems, other extensions)."""
  for split in splits:
    for i in range(count):
      sub = [split] if len(splits) > 1 or split != 'train' else []
      a = texture(i, size, 1 if a_gray else 3)
      save(os.path.join(root, 'A', *sub, f'{i}.png'), a)
      save(os.path.join(root, 'B', *sub, f'{i}.jpg'), texture(100 + i, size), quality=95)
  return str(root)


def tar_gz(folder, archive) -> str:
  """Packs `folder` into `archive` with the folder's name as the top directory."""
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(folder, arcname=os.path.basename(str(folder).rstrip('/')))
  return str(archive)
