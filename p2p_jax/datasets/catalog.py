"""The datasets p2p_jax knows by name, and the error every dataset problem raises.

Plain Python (no Pillow, no TensorFlow), so the config schema can list the choices on a
machine that only trains on numpy batches.
"""

import dataclasses


class DataError(ValueError):
  """A dataset that cannot be used; the message names the file, the problem, the fix."""


@dataclasses.dataclass(frozen=True)
class Official:
  """One of the datasets released with the paper (all in the aligned A|B format)."""
  name: str
  splits: tuple[str, ...]
  size_mb: int  # Archive size, to tell the user what they are about to download.
  description: str

  @property
  def url(self) -> str:
    return f'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{self.name}.tar.gz'

  @property
  def archive(self) -> str:
    return f'{self.name}.tar.gz'


OFFICIAL = {o.name: o for o in (
    Official('facades', ('train', 'val', 'test'), 30,
             'CMP Facades: 400 train images; A = photo, B = label map.'),
    Official('cityscapes', ('train', 'val'), 100,
             'Cityscapes: 2975 train images; A = photo, B = label map.'),
    Official('maps', ('train', 'val'), 250,
             'Google Maps: 1096 train images; A = aerial photo, B = map.'),
    Official('edges2shoes', ('train', 'val'), 2200,
             'UT Zappos50K: ~50k train images; A = HED edges, B = photo.'),
    Official('edges2handbags', ('train', 'val'), 8600,
             'iGAN handbags: ~137k train images; A = HED edges, B = photo.'),
    Official('night2day', ('train', 'val', 'test'), 1900,
             'Transient Attributes webcams: 17,823 train images; A = night, B = day.'),
)}


# config.data.dataset: the official ones, the embedded tiles, and your own folders
# (name -> layout).
EMBEDDED = 'blue_marble'
FOLDER_LAYOUTS = {'aligned_folder': 'aligned', 'paired_folders': 'paired'}
DATASETS = (*OFFICIAL, EMBEDDED, *FOLDER_LAYOUTS)
# config.data.on_bad_file
BAD_FILE_POLICIES = ('error', 'skip')
