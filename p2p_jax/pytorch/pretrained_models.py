"""The reference's 23 published generators: what each translates and the data it learnt.

Plain data (pretrained.py fetches, converts and caches them). Keys are qualified names,
`<method>.<file name>`: sat2map, map2sat and facades_label2photo are published by both
methods.

pix2pix directions: facades (the reference's README: "--direction BtoA as Facades
dataset's A to B direction is photos to labels"), day2night (its docs/datasets.md: "To
train a day2night pix2pix model, you need to add --direction BtoA"); the others follow from
the datasets' layouts (maps: A = aerial photo, B = map; edges2shoes: A = edges, B = photo).

CycleGAN: a model named after its dataset (horse2zebra) maps the dataset's A to its B, the
model named the other way round (zebra2horse) is the same run's other generator (G_B);
style_<painter> maps photos (the B side of <painter>2photo) to paintings. The datasets are
the reference's unpaired ones (trainA/, trainB/, testA/, testB/;
scripts/download_cyclegan_dataset.sh), named as p2p_jax's catalog names them; maps,
cityscapes and facades hold the images of the paired datasets of the same names
(cityscapes: A = photo, B = label map, as its datasets/prepare_cityscapes_dataset.py
writes them; maps: A = aerial photo; facades: A = photo). A converted published CycleGAN
trains on its dataset in its direction (`python -m p2p_jax.main` fine-tuning); `evaluate`
has nothing to score it with (pretrained.check_evaluable).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """One published generator: what it translates and the data it was trained on."""
  method: str        # 'pix2pix' or 'cyclegan'
  name: str          # the published file's name, without .pth
  task: str          # input -> output, in words
  dataset: str       # the dataset (config.data.dataset where p2p_jax knows it)
  direction: str     # config.data.direction: which side of the dataset is the input
  eval_split: str    # config.data.eval_split: the split validation / `evaluate` score
  batch_size: int    # the batch size it was trained with (for fine-tuning)
  counterpart: str = ''  # CycleGAN: the published generator of the other direction

  @property
  def generator(self) -> str:
    return 'unet_256' if self.method == 'pix2pix' else 'resnet_9blocks'


def _pix2pix(name, task, dataset, direction, split, batch):
  return Pretrained('pix2pix', name, task, dataset, direction, split, batch)


def _cyclegan(name, task, dataset, direction, counterpart=''):
  return Pretrained('cyclegan', name, task, dataset, direction, 'test', 1, counterpart)


_ALL = (
    _pix2pix('facades_label2photo', 'facade label map -> photo', 'facades', 'BtoA', 'test', 1),
    _pix2pix('sat2map', 'aerial photo -> map', 'maps', 'AtoB', 'val', 1),
    _pix2pix('map2sat', 'map -> aerial photo', 'maps', 'BtoA', 'val', 1),
    _pix2pix('edges2shoes', 'shoe edges -> photo', 'edges2shoes', 'AtoB', 'val', 4),
    _pix2pix('day2night', 'daytime scene -> night', 'night2day', 'BtoA', 'test', 4),
    _cyclegan('apple2orange', 'apple -> orange', 'apple2orange', 'AtoB', 'orange2apple'),
    _cyclegan('orange2apple', 'orange -> apple', 'apple2orange', 'BtoA', 'apple2orange'),
    _cyclegan('summer2winter_yosemite', 'Yosemite in summer -> in winter',
              'summer2winter_yosemite', 'AtoB', 'winter2summer_yosemite'),
    _cyclegan('winter2summer_yosemite', 'Yosemite in winter -> in summer',
              'summer2winter_yosemite', 'BtoA', 'summer2winter_yosemite'),
    _cyclegan('horse2zebra', 'horse -> zebra', 'horse2zebra', 'AtoB', 'zebra2horse'),
    _cyclegan('zebra2horse', 'zebra -> horse', 'horse2zebra', 'BtoA', 'horse2zebra'),
    _cyclegan('monet2photo', 'Monet painting -> photo', 'monet2photo', 'AtoB', 'style_monet'),
    _cyclegan('style_monet', 'photo -> Monet painting', 'monet2photo', 'BtoA', 'monet2photo'),
    _cyclegan('style_cezanne', 'photo -> Cezanne painting', 'cezanne2photo', 'BtoA'),
    _cyclegan('style_ukiyoe', 'photo -> Ukiyo-e print', 'ukiyoe2photo', 'BtoA'),
    _cyclegan('style_vangogh', 'photo -> Van Gogh painting', 'vangogh2photo', 'BtoA'),
    _cyclegan('sat2map', 'aerial photo -> map', 'maps', 'AtoB', 'map2sat'),
    _cyclegan('map2sat', 'map -> aerial photo', 'maps', 'BtoA', 'sat2map'),
    _cyclegan('cityscapes_photo2label', 'street photo -> label map', 'cityscapes', 'AtoB',
              'cityscapes_label2photo'),
    _cyclegan('cityscapes_label2photo', 'label map -> street photo', 'cityscapes', 'BtoA',
              'cityscapes_photo2label'),
    _cyclegan('facades_photo2label', 'facade photo -> label map', 'facades', 'AtoB',
              'facades_label2photo'),
    _cyclegan('facades_label2photo', 'facade label map -> photo', 'facades', 'BtoA',
              'facades_photo2label'),
    _cyclegan('iphone2dslr_flower', 'iPhone flower photo -> DSLR (shallow depth of field)',
              'iphone2dslr_flower', 'AtoB'),
)
MODELS = {f'{m.method}.{m.name}': m for m in _ALL}
