"""Example transforms (p2p_jax/jitter.py): one window for paired and labelled images,
independent windows for unpaired ones, ids kept by label maps, scaling as the reference."""

import numpy as np
import pytest
from PIL import Image

import data_fixtures as fx
from p2p_jax import jitter
from p2p_jax.datasets.catalog import DataError

TRAIN = jitter.Geometry(load_size=40, crop_size=32, flip=True)


def test_scaling_is_the_references_for_every_byte():
  x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  np.testing.assert_array_equal(jitter.to_float(x), x.astype(np.float32) / 127.5 - 1.0)
  assert jitter.to_float(x).dtype == np.float32 and jitter.to_float(x).shape == x.shape


def test_geometry_sizes_and_windows():
  assert TRAIN.resized(256, 512) == (40, 40)
  assert jitter.Geometry(1024, scale='width').resized(1024, 2048) == (512, 1024)
  assert jitter.Geometry(1024, scale='none').resized(100, 300) == (100, 300)
  windows = [jitter.draw(TRAIN, (40, 40), np.random.default_rng(i)) for i in range(200)]
  assert {w.top for w in windows} == set(range(9)) == {w.left for w in windows}
  assert 60 < sum(w.flip for w in windows) < 140
  # Turning flip off leaves the crops where they were (three draws either way).
  no_flip = jitter.Geometry(40, 32, flip=False)
  for i, w in enumerate(windows):
    other = jitter.draw(no_flip, (40, 40), np.random.default_rng(i))
    assert (other.top, other.left, other.flip) == (w.top, w.left, False)
  assert jitter.draw(TRAIN, (40, 40), None) == jitter.Window(4, 4, False)  # centred
  with pytest.raises(DataError, match='x.png: 20x40 after resizing is smaller than the crop'):
    jitter.draw(TRAIN, (20, 40), np.random.default_rng(0), b'x.png')


def test_paired_images_share_one_window_and_direction_swaps_them():
  a = fx.texture(1)
  record = {'a': a, 'b': a, 'name': b'1.png'}
  for seed in range(5):
    out = jitter.Paired(TRAIN)((record,), np.random.default_rng(seed))
    np.testing.assert_array_equal(out['input'], out['target'])
    assert out['input'].shape == (32, 32, 3) and out['name'] == b'1.png'
  record = {'a': a, 'b': 255 - a, 'name': b'1.png'}
  ab = jitter.Paired(TRAIN)((record,), np.random.default_rng(0))
  ba = jitter.Paired(TRAIN, a_to_b=False)((record,), np.random.default_rng(0))
  np.testing.assert_array_equal(ab['input'], ba['target'])
  gray = jitter.Paired(TRAIN, a_channels=1)((record,), np.random.default_rng(0))
  assert gray['input'].shape == (32, 32, 1) and gray['target'].shape == (32, 32, 3)


def test_paired_output_is_the_references_resize_then_crop():
  a, b = fx.texture(2), fx.texture(3)
  geometry = jitter.Geometry(40, 32, flip=True)
  out = jitter.Paired(geometry)(({'a': a, 'b': b, 'name': b'n'},), np.random.default_rng(7))
  w = jitter.draw(geometry, (40, 40), np.random.default_rng(7))
  big = np.asarray(Image.fromarray(b).resize((40, 40), Image.Resampling.BICUBIC))
  crop = big[w.top:w.top + 32, w.left:w.left + 32][:, ::-1 if w.flip else 1]
  np.testing.assert_array_equal(out['target'], crop)
  assert out['target'].dtype == np.uint8 and jitter.Paired.float_keys == ('input', 'target')


def test_unpaired_images_get_their_own_windows():
  a = fx.texture(4)
  records = ({'image': a, 'name': b'a.png'}, {'image': a, 'name': b'b.png'})
  outs = [jitter.Unpaired(TRAIN)(records, np.random.default_rng(s)) for s in range(8)]
  assert all(o['name'] == b'a.png' for o in outs)
  assert any(not np.array_equal(o['input'], o['target']) for o in outs)
  # Each is still a window of the same resized image: B's is drawn right after A's.
  rng = np.random.default_rng(0)
  first, second = jitter.draw(TRAIN, (40, 40), rng), jitter.draw(TRAIN, (40, 40), rng)
  big = np.asarray(Image.fromarray(a).resize((40, 40), Image.Resampling.BICUBIC))
  for key, w in (('input', first), ('target', second)):
    crop = big[w.top:w.top + 32, w.left:w.left + 32][:, ::-1 if w.flip else 1]
    np.testing.assert_array_equal(outs[0][key], crop)


def test_labelled_maps_keep_ids_and_share_the_photos_window():
  rng = np.random.default_rng(0)
  photo = fx.texture(5)
  label = (photo[..., 0] // 32).astype(np.uint8)       # ids 0..7, tied to the photo
  instance = label.astype(np.int32) * 1000 + 7         # Cityscapes-style instance ids
  record = {'label': label[..., None], 'instance': instance, 'image': photo, 'name': b'c'}
  # Without resizing, the three windows must coincide pixel for pixel.
  same_size = jitter.Geometry(32, 24, flip=True, scale='none')
  for seed in range(6):
    out = jitter.Labelled(same_size)((record,), np.random.default_rng(seed))
    np.testing.assert_array_equal(out['label'], out['target'][..., 0] // 32)
    np.testing.assert_array_equal(out['instance'], out['label'].astype(np.int32) * 1000 + 7)
  out = jitter.Labelled(TRAIN)((record,), rng)
  assert out['label'].dtype == np.uint8 and out['label'].shape == (32, 32)
  assert out['instance'].dtype == np.int32 and out['target'].dtype == np.uint8
  assert jitter.Labelled.float_keys == ('input', 'target')   # 'input': label_nc 0 images
  assert set(np.unique(out['label'])) <= set(np.unique(label))          # NEAREST: no new ids
  assert set(np.unique(out['instance'])) <= set(np.unique(instance))
  without = jitter.Labelled(TRAIN)(({'label': label, 'image': photo, 'name': b'c'},), rng)
  assert 'instance' not in without
  with pytest.raises(DataError, match='c: photo 32x32 and label map 16x16 differ'):
    jitter.Labelled(TRAIN)(({'label': label[:16, :16], 'image': photo, 'name': b'c'},), rng)
