"""pix2pixHD's labelled data (p2p_jax/datasets/labelled.py, input_pipeline.labelled_batches):
the official folder layout and a Cityscapes-like tree (folders and zips) prepared into
records, one batch's content (nearest labels, one window and flip for label, instance map
and photo), the bad-file errors, and a tiny pix2pixHD run on label folders that resumes
bit-exactly.

Files are made here: label maps with ids in 8x8-pixel blocks (8-bit PNGs), instance maps as
Cityscapes writes them (label * 1000 + object, 16-bit PNGs; the object is the column
block, so a flip shows) and photos whose colour is a
function of the label (PALETTE[label]), so that any crop or flip applied to one of them
and not to the others shows.
"""

import json
import os
import signal
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from p2p_jax import config_schema, input_pipeline, jitter, train
from p2p_jax.datasets import catalog, labelled
from p2p_jax.datasets.catalog import DataError
import data_fixtures as fx

LABELS = 4
PALETTE = np.array([(20, 40, 60), (200, 30, 90), (60, 220, 10), (120, 120, 250)], np.uint8)


def seed_of(*parts) -> int:
  """A seed from a file's place (Python's hash() of strings differs between processes)."""
  return zlib.crc32(repr(parts).encode()) % 1000


def maps(seed: int, height: int = 32, width: int = 48):
  """(label [H, W] uint8, instance [H, W] uint16, photo [H, W, 3] uint8)."""
  rng = np.random.default_rng(seed)
  cells = rng.integers(0, LABELS, (height // 8, width // 8))
  label = np.kron(cells, np.ones((8, 8), np.int64)).astype(np.uint8)
  # Cityscapes' label * 1000 + object; here the object is the 8-px column block.
  instance = (label.astype(np.uint16) * 1000 + np.arange(width) // 8).astype(np.uint16)
  return label, instance, PALETTE[label]


def save_ids(path, ids: np.ndarray) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(ids).save(path)   # uint8 -> 8-bit, uint16 -> 16-bit gray PNG
  return str(path)


def label_folders(root, splits=('train', 'val'), count=3, instances=True, jpeg=False, **size):
  """The official layout: <split>_label/ <split>_inst/ <split>_img/ (+ test_label/ and
  test_inst/ without photos, as the official datasets/cityscapes/ ships them); with
  `jpeg` the first photo of each split is a JPEG."""
  for split in (*splits, 'test'):
    for i in range(count):
      label, instance, photo = maps(seed_of(split, i), **size)
      save_ids(os.path.join(root, f'{split}_label', f'{i:03d}.png'), label)
      if instances:
        save_ids(os.path.join(root, f'{split}_inst', f'{i:03d}.png'), instance)
      if split != 'test':
        first_jpeg = jpeg and i == 0
        fx.save(os.path.join(root, f'{split}_img', f'{i:03d}.jpg' if first_jpeg else
                             f'{i:03d}.png'), photo, **({'quality': 95} if first_jpeg else {}))
  return str(root)


def cityscapes_tree(root, count=2):
  """gtFine/ and leftImg8bit/ as Cityscapes' zips hold them (two cities per split)."""
  for split in ('train', 'val', 'test'):
    for i in range(count):
      city = ('aachen', 'bochum')[i % 2]
      stem = f'{city}_{i:06d}_000019'
      label, instance, photo = maps(seed_of(split, i, 'c'))
      save_ids(os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelIds.png'), label)
      save_ids(os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_instanceIds.png'),
               instance)
      fx.save(os.path.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'), photo)
  return str(root)


def zip_folder(folder, archive):
  with zipfile.ZipFile(archive, 'w') as z:
    for dirpath, _, files in os.walk(folder):
      for f in files:
        path = os.path.join(dirpath, f)
        z.write(path, os.path.relpath(path, os.path.dirname(folder)))
  return str(archive)


def data(tmp_path, dataset='label_folders', **overrides):
  return fx.data_config(tmp_path / 'tfds', dataset=dataset, **overrides)


def prepare(data_config, label_nc=LABELS, instance_map=True):
  return labelled.prepare(labelled.with_labels(data_config, label_nc, instance_map))


def records(builder, split):
  from p2p_jax.datasets import records as records_lib  # pylint: disable=import-outside-toplevel
  source = records_lib.TfdsRecords(builder.data_dir, split)
  return sorted((source[i] for i in range(len(source))), key=lambda r: r['name'])


# ------------------------------------------------------------------ preparation


def test_label_folders_are_prepared_as_stored_and_splits_without_photos_left_out(tmp_path,
                                                                                caplog):
  root = label_folders(tmp_path / 'mine', jpeg=True)
  builder = prepare(data(tmp_path, source=root))
  assert sorted(builder.info.splits) == ['train', 'val']   # test_label/: no test_img/
  assert 'split \'test\' left out' in caplog.text
  got = records(builder, 'train')
  assert [r['name'] for r in got] == [b'000.png', b'001.png', b'002.png']
  for i, r in enumerate(got):
    label, instance, photo = maps(seed_of('train', i))
    assert r['label'].dtype == np.uint8 and r['instance'].dtype == np.int32
    np.testing.assert_array_equal(r['label'], label)
    np.testing.assert_array_equal(r['instance'], instance)
    if i:   # PNG photos exactly (the first is a JPEG)
      np.testing.assert_array_equal(r['image'], photo)
  # The counts the trainer sizes its epochs with; without instances none are stored.
  config = data(tmp_path, source=root)
  assert input_pipeline.num_examples(config, 'val', data_kind='labels', label_nc=LABELS,
                                     instance_map=True) == 3
  plain = prepare(data(tmp_path, source=root), instance_map=False)
  assert 'instance' not in records(plain, 'train')[0]


def test_label_nc_0_reads_train_a_and_train_b_as_images(tmp_path):
  root = tmp_path / 'ab'
  for i in range(2):
    fx.save(str(root / 'train_A' / f'{i}.png'), fx.texture(i))
    fx.save(str(root / 'train_B' / f'{i}.png'), fx.texture(10 + i))
  config = data(tmp_path, source=str(root), load_size=32, crop_size=32)
  builder = prepare(config, label_nc=0, instance_map=False)
  first = records(builder, 'train')[0]
  np.testing.assert_array_equal(first['input'], fx.texture(0))
  batch = next(iter(input_pipeline.numpy_batches(
      config, 'train', batch_size=2, train=False, seed=0, data_kind='paired', label_nc=0,
      instance_map=False)))
  assert sorted(batch) == ['input', 'name', 'target'] and batch['input'].dtype == np.float32
  with pytest.raises(DataError, match=r'no train_label/ folder; pix2pixhd.label_nc 4 reads'):
    prepare(data(tmp_path, source=str(root)))


@pytest.mark.parametrize('as_zips', [False, True])
def test_cityscapes_from_its_folders_or_zips(tmp_path, as_zips):
  tree = cityscapes_tree(tmp_path / 'extracted')
  manual = tmp_path / 'manual'
  manual.mkdir()
  if as_zips:
    zip_folder(os.path.join(tree, 'gtFine'), manual / 'gtFine_trainvaltest.zip')
    zip_folder(os.path.join(tree, 'leftImg8bit'), manual / 'leftImg8bit_trainvaltest.zip')
  else:
    manual = tree
  builder = prepare(data(tmp_path, dataset='cityscapes', source=str(manual)))
  assert sorted(builder.info.splits) == ['train', 'val']   # gtFine's test: placeholders
  got = records(builder, 'val')
  assert [r['name'] for r in got] == [b'aachen_000000_000019_gtFine_labelIds.png',
                                      b'bochum_000001_000019_gtFine_labelIds.png']
  label, instance, photo = maps(seed_of('val', 1, 'c'))
  np.testing.assert_array_equal(got[1]['label'], label)
  np.testing.assert_array_equal(got[1]['instance'], instance)
  np.testing.assert_array_equal(got[1]['image'], photo)


def test_cityscapes_without_its_zips_says_where_to_put_them(tmp_path):
  empty = tmp_path / 'manual'
  empty.mkdir()
  with pytest.raises(DataError, match=r'cityscapes: no gtFine_trainvaltest.zip and no '
                     r'leftImg8bit_trainvaltest.zip .*registration.*https://www.cityscapes-'
                     rf'dataset.com/downloads/ and put them in {empty}'):
    prepare(data(tmp_path, dataset='cityscapes', source=str(empty)))


# ------------------------------------------------------------------ bad files


def _break(root, how):
  if how == 'id':
    label, _, _ = maps(0)
    label[3, 5] = LABELS + 2
    return save_ids(os.path.join(root, 'train_label', '001.png'), label)
  if how == 'colour':
    return fx.save(os.path.join(root, 'train_label', '001.png'), fx.texture(3, 32))
  if how == 'no instance':
    os.remove(os.path.join(root, 'train_inst', '001.png'))
    return os.path.join(root, 'train_label', '001.png')
  if how == 'instance size':
    return save_ids(os.path.join(root, 'train_inst', '001.png'),
                    np.zeros((16, 48), np.uint16))
  if how == 'photo size':
    return fx.save(os.path.join(root, 'train_img', '001.png'), fx.texture(3, 32))
  if how == 'no photo':
    os.remove(os.path.join(root, 'train_img', '001.png'))
    return os.path.join(root, 'train_label', '001.png')
  raise AssertionError(how)


@pytest.mark.parametrize('how, message', [
    ('id', r'label ids 6 >= pix2pixhd.label_nc \(4\); ids must be 0..3'),
    ('colour', r'the label map is a RGB image, but it must hold one id per pixel'),
    ('no instance', r'no instance map .*set pix2pixhd.instance_map=False'),
    ('instance size', r'instance map is 48x16 but its label map .*001.png is 48x32'),
    ('photo size', r'photo is 32x32 but its label map .*001.png is 48x32'),
    ('no photo', r'no photo named 001.\* .* in .*train_img'),
])
def test_bad_files_are_one_line_naming_the_file_at_preparation(tmp_path, how, message):
  root = label_folders(tmp_path / 'bad', splits=('train',), count=2)
  path = _break(root, how)
  with pytest.raises(DataError, match=message) as error:
    prepare(data(tmp_path, source=root))
  assert str(error.value).startswith(path) and '\n' not in str(error.value)
  # on_bad_file=skip leaves the file out, counted, and keeps the rest.
  builder = prepare(data(tmp_path, source=root, on_bad_file='skip'))
  assert builder.info.splits['train'].num_examples == 1


_CHILD = r'''
import json, sys
from p2p_jax import config_schema, input_pipeline
data = config_schema.get_config().data
data.update(dataset='label_folders', source=sys.argv[1], data_dir=sys.argv[2])
try:
  input_pipeline.num_examples(data, 'train', data_kind='labels', label_nc=4, instance_map=True)
  result = {}
except ValueError as e:
  result = {'error': f'{type(e).__name__}: {e}'}
result['tensorflow'] = 'tensorflow' in sys.modules
print('RESULT ' + json.dumps(result), flush=True)
'''


@pytest.mark.skipif(not __import__('importlib').util.find_spec('tensorflow'),
                    reason='TensorFlow is not installed: preparation runs in-process')
def test_prepared_in_a_child_process_with_the_labels_settings_and_its_errors(tmp_path):
  """Where TensorFlow is installed the trainer prepares in a child process: label_nc and
  instance_map reach it (a label id 6 is bad only for label_nc 4), and its error comes
  back as the same one line."""
  root = label_folders(tmp_path / 'child', splits=('train',), count=2)
  path = _break(root, 'id')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', P2P_JAX_PREPARE_IN_PROCESS='0')
  out = subprocess.run([sys.executable, '-c', _CHILD, root, str(tmp_path / 'tfds')], cwd=ROOT,
                       env=env, capture_output=True, text=True, check=True, timeout=300)
  line = next(l for l in out.stdout.splitlines() if l.startswith('RESULT '))
  result = json.loads(line[len('RESULT '):])
  assert result == {'error': f'DataError: {path}: label ids 6 >= pix2pixhd.label_nc (4); ids '
                             'must be 0..3 (raise label_nc or fix the map)',
                    'tensorflow': False}, out.stdout + out.stderr
  assert 'Traceback' not in out.stderr, out.stderr


def test_a_missing_instance_folder_and_maps_asked_of_a_paired_dataset(tmp_path):
  root = label_folders(tmp_path / 'noinst', splits=('train',), count=1, instances=False)
  with pytest.raises(DataError, match=r'train_inst: missing; pix2pixhd.instance_map is on'):
    prepare(data(tmp_path, source=root))
  with pytest.raises(DataError, match=r"'blue_marble' has no label maps"):
    input_pipeline.num_examples(data(tmp_path, dataset='blue_marble'), 'train',
                                data_kind='labels', label_nc=LABELS, instance_map=True)
  config = config_schema.get_config()
  config.data.dataset = 'label_folders'
  with pytest.raises(ValueError, match=r"'label_folders' is pix2pixHD's layout .* method is "
                     "'pix2pix'"):
    config_schema.validate(config)


# ------------------------------------------------------------------ batches


def test_one_batch_shares_its_window_and_flip_and_keeps_label_ids(tmp_path):
  root = label_folders(tmp_path / 'b', splits=('train',), count=4, height=40, width=80)
  # 'crop' keeps the stored size: the photo must be PALETTE[label] pixel for pixel after
  # the shared window and flip (and the instance map label * 1000 + its half).
  config = data(tmp_path, source=root, resize_or_crop='crop', crop_size=24, flip=True)
  stream = input_pipeline.numpy_batches(config, 'train', batch_size=2, train=True, seed=3,
                                        data_kind='labels', label_nc=LABELS,
                                        instance_map=True)
  flips = set()
  for _ in range(4):
    batch = next(stream)
    assert batch['label'].dtype == np.uint8 and batch['label'].shape == (2, 24, 24)
    assert batch['instance'].dtype == np.int32 and batch['target'].shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(batch['target'], jitter.to_float(PALETTE[batch['label']]))
    np.testing.assert_array_equal(batch['instance'] // 1000, batch['label'])
    halves = batch['instance'] % 1000   # 0 on the left half of the file, 1 on the right
    flips |= {bool(h[0, 0] > h[0, -1]) for h in halves}
  assert flips == {True, False}   # both flipped and unflipped windows were seen
  stream.close()
  # scale_width: 80x40 -> 48x24, nearest: only ids (and instance ids) the files have.
  config = data(tmp_path, source=root, resize_or_crop='scale_width', load_size=48)
  with input_pipeline.numpy_batches(config, 'train', batch_size=4, train=True, seed=0,
                                    data_kind='labels', label_nc=LABELS,
                                    instance_map=True) as stream:
    batch = next(stream)
  assert batch['label'].shape == (4, 24, 48) and batch['target'].shape == (4, 24, 48, 3)
  # Each example is its file's maps resized NEAREST (ids kept, no new ones) and its photo
  # BICUBIC, all three flipped or none.
  for i, name in enumerate(batch['name']):
    files = maps(seed_of('train', int(name[:3])), 40, 80)
    want = [np.asarray(Image.fromarray(a).resize((48, 24), f)) for a, f in zip(
        files, (Image.Resampling.NEAREST, Image.Resampling.NEAREST, Image.Resampling.BICUBIC))]
    want[2] = jitter.to_float(want[2])
    flipped = [w[:, ::-1] for w in want]
    got = [batch[k][i] for k in ('label', 'instance', 'target')]
    assert (all(np.array_equal(g, w) for g, w in zip(got, want)) or
            all(np.array_equal(g, w) for g, w in zip(got, flipped))), name
  # Not a multiple of the generator's: one line naming the file.
  with pytest.raises(DataError, match=r'00\d.png: 24x48 after resizing '
                     r'\(width, load_size 48\), but the generator takes multiples of 16'):
    next(iter(input_pipeline.numpy_batches(
        config, 'train', batch_size=1, train=True, seed=0, data_kind='labels',
        label_nc=LABELS, instance_map=True, size_multiple=16)))


def test_the_stream_resumes_at_any_batch(tmp_path):
  root = label_folders(tmp_path / 'r', splits=('train',), count=3)
  config = data(tmp_path, source=root, resize_or_crop='scale_width_and_crop', load_size=40,
                crop_size=24)
  kwargs = dict(batch_size=2, train=True, seed=7, data_kind='labels', label_nc=LABELS,
                instance_map=True)
  with input_pipeline.numpy_batches(config, 'train', **kwargs) as stream:
    whole = [next(stream) for _ in range(4)]
  with input_pipeline.numpy_batches(config, 'train', start_batch=2, **kwargs) as stream:
    resumed = [next(stream) for _ in range(2)]
  for a, b in zip(whole[2:], resumed):
    for key in ('label', 'instance', 'target'):
      np.testing.assert_array_equal(a[key], b[key])
    assert list(a['name']) == list(b['name'])


def test_geometry_follows_resize_or_crop():
  config = config_schema.get_config().data
  config.update(load_size=64, crop_size=32, flip=True)
  cases = {'resize_and_crop': ((64, 64), 32), 'scale_width': ((32, 64), None),
           'scale_width_and_crop': ((32, 64), 32), 'crop': ((40, 80), 32),
           'none': ((32, 80), None)}   # 40 / 16 = 2.5: Python's round, as the official
  for mode, (size, crop) in cases.items():
    config.resize_or_crop = mode
    g = input_pipeline.geometry(config, train=True, multiple=16)
    assert (g.resized(40, 80), g.crop_size, g.flip) == (size, crop, True), mode
    assert not input_pipeline.geometry(config, train=False).flip
  assert catalog.is_labelled('cityscapes', 'labels')
  assert not catalog.is_labelled('cityscapes', 'paired')   # pix2pix's aligned cityscapes


# ------------------------------------------------------------------ training


def test_a_pix2pixhd_run_on_label_folders_resumes_bit_exactly(tmp_path, capsys):
  # pylint: disable=import-outside-toplevel
  from test_pix2pixhd_train import ONE_DEVICE, make_config
  from test_train import assert_bit_equal
  root = label_folders(tmp_path / 'run', count=4, height=48, width=64)   # -> 36x48
  config = make_config('pix2pixhd_global')
  config.data.update(dataset='label_folders', source=root, data_dir=str(tmp_path / 'tfds'),
                     resize_or_crop='scale_width_and_crop', load_size=48, crop_size=16 * 2,
                     workers=0)
  config.num_train_steps = 3
  config.checkpoint_every_steps = config.eval_every_steps = 2
  config.log_every_steps = config.sample_every_steps = 2

  reference = train.train_and_evaluate(config, str(tmp_path / 'whole'), devices=ONE_DEVICE)
  assert 'validation at step 2' in capsys.readouterr().out

  def stop_at_1(step):
    if step == 1:
      os.kill(os.getpid(), signal.SIGTERM)

  workdir = str(tmp_path / 'stopped')
  state = train.train_and_evaluate(config, workdir, devices=ONE_DEVICE, step_hook=stop_at_1)
  assert int(state.step) == 1
  state = train.train_and_evaluate(config, workdir, devices=ONE_DEVICE)
  assert int(state.step) == 3
  assert_bit_equal(state, reference)


def test_uncropped_images_of_several_sizes_in_one_batch_are_one_line(tmp_path):
  root = tmp_path / 'sizes'
  for i, height in enumerate((40, 56)):
    label, instance, photo = maps(i, height, 80)
    save_ids(str(root / 'train_label' / f'{i}.png'), label)
    fx.save(str(root / 'train_img' / f'{i}.png'), photo)
  config = data(tmp_path, source=str(root), resize_or_crop='scale_width', load_size=48)
  kwargs = dict(train=True, seed=0, data_kind='labels', label_nc=LABELS, instance_map=False)
  with pytest.raises(DataError, match=r'examples of different sizes in one batch \(label: '
                     r'\d.png \(\d\d, 48\), \d.png \(\d\d, 48\)\); crop them'):
    next(iter(input_pipeline.numpy_batches(config, 'train', batch_size=2, **kwargs)))
  with input_pipeline.numpy_batches(config, 'train', batch_size=1, **kwargs) as stream:
    assert {next(stream)['label'].shape for _ in range(4)} == {(1, 24, 48), (1, 33, 48)}
