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


@dataclasses.dataclass(frozen=True)
class OfficialUnpaired:
  """One of CycleGAN's datasets (its reference's zips: trainA/ trainB/ testA/ testB/)."""
  name: str
  size_mb: int
  description: str

  @property
  def url(self) -> str:
    return f'http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{self.name}.zip'

  @property
  def archive(self) -> str:
    return f'{self.name}.zip'


# Sizes from TFDS's url_checksums/cycle_gan.txt (cityscapes: its own, removed from TFDS).
UNPAIRED_OFFICIAL = {o.name: o for o in (
    OfficialUnpaired('apple2orange', 75, 'ImageNet apples (A) and oranges (B).'),
    OfficialUnpaired('summer2winter_yosemite', 126, 'Flickr: Yosemite in summer (A), winter (B).'),
    OfficialUnpaired('horse2zebra', 111, 'ImageNet horses (A) and zebras (B).'),
    OfficialUnpaired('monet2photo', 291, 'Monet paintings (A) and landscape photos (B).'),
    OfficialUnpaired('cezanne2photo', 267, 'Cezanne paintings (A) and landscape photos (B).'),
    OfficialUnpaired('ukiyoe2photo', 279, 'Ukiyo-e prints (A) and landscape photos (B).'),
    OfficialUnpaired('vangogh2photo', 292, 'Van Gogh paintings (A) and landscape photos (B).'),
    OfficialUnpaired('iphone2dslr_flower', 324, 'Flowers by iPhone (A) and DSLR (B).'),
    OfficialUnpaired('maps', 1408, 'Google Maps, unpaired: aerial photos (A), maps (B).'),
    OfficialUnpaired('cityscapes', 267, 'Cityscapes, unpaired: photos (A), label maps (B).'),
    OfficialUnpaired('facades', 34, 'CMP Facades, unpaired: photos (A), label maps (B).'),
)}


# pix2pixHD's labelled data (datasets/labelled.py): Cityscapes' gtFine label and instance
# ids with its leftImg8bit photos (registration required: the user's zips, never
# downloaded), and the official folder layout (train_label/ train_inst/ train_img/).
LABELLED_OFFICIAL = {'cityscapes': 'Cityscapes gtFine (labelIds, instanceIds) + leftImg8bit: '
                                   '2975 train, 500 val, 2048x1024.'}
LABEL_FOLDERS = 'label_folders'

# config.data.dataset: the official ones, the embedded tiles, and your own folders
# (name -> layout). maps, cityscapes and facades name pix2pix's aligned archives for
# pix2pix and CycleGAN's zips of the same images for CycleGAN, as in the reference;
# cityscapes names the full gtFine + leftImg8bit for pix2pixHD's label maps.
EMBEDDED = 'blue_marble'
FOLDER_LAYOUTS = {'aligned_folder': 'aligned', 'paired_folders': 'paired'}
UNPAIRED_FOLDERS = 'unpaired_folders'
DATASETS = (*OFFICIAL, EMBEDDED, *FOLDER_LAYOUTS,
            *(n for n in UNPAIRED_OFFICIAL if n not in OFFICIAL), UNPAIRED_FOLDERS,
            LABEL_FOLDERS)


def is_unpaired(dataset: str, data_kind: str) -> bool:
  """Whether `dataset` is read as an unpaired one (trainA/trainB) for a method whose data
  kind is `data_kind` ('paired', 'unpaired', ...; p2p_jax.methods.base.DATA_KINDS)."""
  if dataset == UNPAIRED_FOLDERS or (dataset in UNPAIRED_OFFICIAL and dataset not in OFFICIAL):
    return True
  return data_kind == 'unpaired' and dataset in UNPAIRED_OFFICIAL


def is_labelled(dataset: str, data_kind: str) -> bool:
  """Whether `dataset` is read by the labelled pipeline (datasets/labelled.py) for a
  method whose data kind is `data_kind`: your label folders always (label_nc 0 reads
  their train_A/ train_B/), Cityscapes for label maps ('labels')."""
  return dataset == LABEL_FOLDERS or (data_kind == 'labels' and dataset in LABELLED_OFFICIAL)
# config.data.on_bad_file
BAD_FILE_POLICIES = ('error', 'skip')
