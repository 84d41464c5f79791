"""pix2pixHD's feature clusters (p2p_jax/feature_clusters.py) and the command that makes
them (p2p_jax/encode_features.py), against the rules of the official encode_features.py,
Pix2PixHDModel.encode_features and sample_features (NVIDIA/pix2pixHD).

Rows: one per instance id i of an image, of label i (i < 1000) or i // 1000, holding E's
features at the instance's middle pixel and its size num / (H * W // 32); per label the
rows of size > 0.5 are k-means clustered into min(rows, n_clusters) centers; at test time
each instance gets one center of its label. The command runs on a tiny workdir of the
trainer's own layout (config.json, an Orbax checkpoint with g.params {'G', 'E'}) whose
dataset is 5 images in the official label folders, read by the real pipeline.
"""

import os

import jax
import numpy as np
import pytest

from p2p_jax import (checkpointing, encode_features, feature_clusters as fc, input_pipeline,
                     networks, train_logging, workdirs)
from p2p_jax.methods import pix2pixhd
import test_labelled_data as labelled_data
import test_pix2pixhd_train as hd_train

SIZE = hd_train.SIZE   # 32: H * W // 32 = 32 pixels a block


def test_kmeans_finds_separated_clusters_exactly_and_a_seed_fixes_the_result():
  rng = np.random.default_rng(0)
  means = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0], [0.0, 6.0, -2.0], [4.0, 4.0, 4.0]])
  offsets = rng.normal(scale=0.1, size=(4, 25, 3))
  offsets -= offsets.mean(1, keepdims=True)   # each blob's mean is exactly its center
  points = (means[:, None] + offsets).reshape(-1, 3)[rng.permutation(100)]
  centers = fc.kmeans(points, 4)
  np.testing.assert_allclose(centers[np.lexsort(centers.T[::-1])],
                             means[np.lexsort(means.T[::-1])], atol=1e-12)

  noise = rng.normal(size=(200, 3))   # no clear clusters: the draws decide
  a, b = fc.kmeans(noise, 5, seed=3), fc.kmeans(noise, 5, seed=3)
  np.testing.assert_array_equal(a, b)
  one_init = [fc.kmeans(noise, 5, seed=s, n_init=1) for s in range(4)]
  assert any(not np.array_equal(one_init[0], c) for c in one_init[1:])
  # k = n: every point its own center; duplicates still give k centers.
  np.testing.assert_array_equal(np.sort(fc.kmeans(points[:7], 7), 0), np.sort(points[:7], 0))
  same = np.repeat(points[:2], 3, 0)
  assert fc.kmeans(same, 3).shape == (3, 3)
  with pytest.raises(ValueError, match=r'1 <= k <= n'):
    fc.kmeans(points[:2], 3)


def cityscapes_ids():
  """[32, 32] ids: road 7 (no instances), cars 26000 (100 px), 26001 (16 px: exactly
  half a block), 26002 (17 px), a person 24000 in two pieces (48 px), 1 (label 1)."""
  ids = np.full((SIZE, SIZE), 7, np.int64)
  ids[2:12, 2:12] = 26000
  ids[20:24, 20:24] = 26001
  ids[26:30, 2:6] = 26002
  ids[30, 0] = 26002
  ids[14:18, 14:22] = 24000
  ids[0:4, 24:28] = 24000
  ids[31, 31] = 1
  return ids


def test_instance_features_are_the_official_rows():
  ids = cityscapes_ids()
  features = np.arange(SIZE * SIZE * 2, dtype=np.float32).reshape(SIZE, SIZE, 2)
  rows = fc.instance_features(features, ids)
  assert sorted(rows) == [1, 7, 24, 26]
  for label, members in ((1, [1]), (7, [7]), (24, [24000]), (26, [26000, 26001, 26002])):
    assert rows[label].shape == (len(members), 3)
    for row, i in zip(rows[label], members):
      pixels = np.flatnonzero(ids == i)           # row-major, as torch's nonzero()
      middle = pixels[len(pixels) // 2]
      np.testing.assert_array_equal(row[:2], features.reshape(-1, 2)[middle])
      assert row[2] == len(pixels) / (SIZE * SIZE // 32)
  np.testing.assert_array_equal(rows[26][:, 2], [100 / 32, 16 / 32, 17 / 32])


def test_cluster_keeps_instances_over_half_a_block_in_at_most_n_clusters():
  ids = cityscapes_ids()
  rng = np.random.default_rng(1)
  by_label = {}
  for _ in range(3):   # three images: E's output is constant over each instance
    table = {i: rng.normal(size=3) for i in np.unique(ids)}
    features = np.stack([[table[i] for i in row] for row in ids])
    for label, r in fc.instance_features(features, ids).items():
      by_label.setdefault(label, []).append(r)
  by_label = {k: np.concatenate(v) for k, v in by_label.items()}
  centers = fc.cluster(by_label, n_clusters=4)
  # Label 1 (one pixel) has no instance over half a block; 26001 (ratio exactly 0.5) is
  # dropped, 26000 and 26002 kept: 6 rows in 4 clusters; person 3 rows in 3; road 3 in 3.
  assert sorted(centers) == [7, 24, 26]
  assert {k: v.shape for k, v in centers.items()} == {7: (3, 3), 24: (3, 3), 26: (4, 3)}
  assert all(v.dtype == np.float32 for v in centers.values())
  kept = by_label[24][by_label[24][:, -1] > 0.5, :-1]
  np.testing.assert_allclose(np.sort(centers[24], 0), np.sort(kept, 0), rtol=1e-6)
  assert fc.cluster(by_label, n_clusters=1)[26].shape == (1, 3)


def test_sample_feature_map_gives_each_instance_one_center_of_its_label():
  centers = {7: np.array([[1.0, 2.0, 3.0]], np.float32),
             26: np.arange(15, dtype=np.float32).reshape(5, 3),
             24: np.array([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]], np.float32)}
  ids = cityscapes_ids()
  out = fc.sample_feature_map(centers, ids, 3, seed=0)
  assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.float32
  for i in np.unique(ids):
    values = out[ids == i]
    assert (values == values[0]).all(), i
    label = fc.label_of(int(i))
    if label not in centers:
      np.testing.assert_array_equal(values[0], 0)   # id 1: label 1 has no centers
      continue
    pick = np.random.default_rng([0, int(i)]).integers(len(centers[label]))
    np.testing.assert_array_equal(values[0], centers[label][pick])
  # The same instance in another crop (a tile of a large image) or another image: the
  # same vector. Another seed: other draws.
  crop = fc.sample_feature_map(centers, ids[10:30, 0:20], 3, seed=0)
  np.testing.assert_array_equal(crop, out[10:30, 0:20])
  other = np.full((8, 8), 26001)
  np.testing.assert_array_equal(fc.sample_feature_map(centers, other, 3)[0, 0],
                                out[ids == 26001][0])
  seeds = [fc.sample_feature_map(centers, ids, 3, seed=s) for s in range(1, 6)]
  assert any(not np.array_equal(s, out) for s in seeds)
  with pytest.raises(ValueError, match=r'label 7 have 3 features, the model 4'):
    fc.sample_feature_map(centers, ids, 4)


def test_the_file_round_trips_is_replaced_atomically_and_bad_files_are_one_line(
    tmp_path, monkeypatch):
  path = fc.clusters_path(str(tmp_path))
  assert path == str(tmp_path / 'features_clustered_010.npz')
  assert fc.clusters_path('w', 3).endswith('features_clustered_003.npz')
  with pytest.raises(FileNotFoundError, match=r'features_clustered_010.npz not found: .*'
                     rf'python -m p2p_jax.encode_features --workdir={tmp_path}\)$'):
    fc.load(path)
  centers = {7: np.ones((1, 3), np.float32), 26: np.arange(12, dtype=np.float32).reshape(4, 3)}
  fc.save(path, centers, {'images': 5, 'counts': {'7': 1}})
  got, meta = fc.load(path, feat_num=3)
  assert meta == {'images': 5, 'counts': {'7': 1}} and sorted(got) == [7, 26]
  for k, v in centers.items():
    np.testing.assert_array_equal(got[k], v)
  with np.load(path, allow_pickle=False) as z:   # plain arrays: no pickle needed
    assert sorted(z.files) == ['centers_26', 'centers_7', 'feat_num', 'labels', 'meta',
                               'version']
  with pytest.raises(ValueError, match=r'holds features of length 3, but this model\'s '
                     r'encoder makes 4 \(pix2pixhd.feat_num\)'):
    fc.load(path, feat_num=4)

  good = open(path, 'rb').read()
  # A save that fails while writing (full disk: one line naming the file; Ctrl-C) leaves
  # the old file, no other.
  for error, raised, message in (
      (OSError(28, 'No space left on device'), ValueError,
       r'features_clustered_010.npz: the clusters file could not be written \(No space left '
       r'on device\); the previous one is as it was'),
      (KeyboardInterrupt(), KeyboardInterrupt, None)):
    def failing_savez(f, **arrays):
      f.write(b'PK\x03\x04 half a file')
      raise error
    monkeypatch.setattr(fc.np, 'savez', failing_savez)
    with pytest.raises(raised, match=message):
      fc.save(path, {7: np.zeros((2, 3))}, {})
    assert open(path, 'rb').read() == good
    assert os.listdir(tmp_path) == ['features_clustered_010.npz']
  monkeypatch.undo()

  bad = str(tmp_path / 'features_clustered_002.npz')
  for content in (good[:len(good) // 2], b'', b'not a zip file'):
    with open(bad, 'wb') as f:
      f.write(content)
    with pytest.raises(ValueError) as e:
      fc.load(bad)
    message = str(e.value)
    assert message.startswith(f'{bad}: not a readable feature clusters file (truncated or '
                              'corrupt')
    assert '\n' not in message and 'encode_features --workdir=' in message


@pytest.fixture(scope='module')
def feature_workdir(tmp_path_factory):
  """A tiny pix2pixHD workdir with the feature encoder (hd_train's config), as the trainer
  leaves it: config.json and a checkpoint at step 2 of the state with g.params {'G', 'E'};
  its dataset: 5 training images in the official label folders (label * 1000 + column
  block instance maps, 32 x 48 px, read at 32 x 32). The state is step 0's, saved as step
  2: training would compile the whole train step (~15 s here), and the encoder's weights
  are all this command reads."""
  root = tmp_path_factory.mktemp('data')
  config = hd_train.make_config('pix2pixhd_global', instance_feat=True, nef=4,
                                n_downsample_E=2)
  config.data.update(dataset='label_folders', data_dir=str(root / 'tfds'), download=False,
                     source=labelled_data.label_folders(root / 'folders', splits=('train',),
                                                        count=5))
  config.num_train_steps = 2
  state = jax.jit(pix2pixhd.METHOD.setup(config, 2, 'batch').init)()
  assert set(state.g.params) == {'G', 'E'}
  workdir = str(tmp_path_factory.mktemp('hd_features'))
  workdirs.save_config(config, workdir)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), async_save=False) as ckpt:
    ckpt.save(2, jax.device_get(state.replace(step=np.int32(2))))
  return workdir, config, jax.device_get(state.g.params['E'])


def five_images():
  """hd_train's labelled batches (labels 0..3, instance = label * 1000 + right half):
  batches of 2, 2 and 1 images."""
  data = hd_train.labelled(seed=7)(0)
  first, second = next(data), next(data)
  return [first, second, {k: v[:1] for k, v in next(data).items()}]


def test_encode_features_clusters_the_encoders_features_of_the_split(feature_workdir,
                                                                     capsys):
  workdir, config, e_params = feature_workdir
  # Batches of 2, 2 and 1 (the last one filled up for the compiled program, then dropped).
  assert encode_features.main([f'--workdir={workdir}', '--n_clusters=50',
                               '--batch_size=2']) == 0
  out = capsys.readouterr().out
  path = fc.clusters_path(workdir, 50)
  assert f'clusters: {path}' in out and '5 images of train, checkpoint step 2: ' in out
  centers, meta = fc.load(path, feat_num=3)
  assert meta['images'] == 5 and meta['checkpoint_step'] == 2 and meta['split'] == 'train'
  assert meta['ids'] == 'instance' and meta['workdir'] == workdir

  # 50 clusters > rows: the centers are exactly the rows kept, E's features of each
  # instance over half a block, label by label, of the split in order without jitter. Ids
  # 1..5 (label 0, column blocks 1..5) are labels 1..5 by the official rule; 4 and 5 are
  # not labels of this model (label_nc 4) and are left out, as the official script does.
  encoder = networks.create_feature_encoder(config)
  method = pix2pixhd.METHOD
  want = {}
  for batch in input_pipeline.numpy_batches(
      config.data, 'train', batch_size=8, train=False, seed=0, process_index=0,
      process_count=1, data_kind='labels', **method.pipeline_options(config)):
    feats = np.asarray(jax.jit(encoder.apply)({'params': e_params}, batch['target'],
                                              batch['instance']))
    for f, i in zip(feats, batch['instance']):
      for label, r in fc.instance_features(f, i).items():
        want.setdefault(label, []).extend(r[r[:, -1] > 0.5, :-1])
  assert max(want) >= 4 and sorted(centers) == [k for k in sorted(want) if k < 4]
  for label in centers:
    rows = want[label]
    assert meta['counts'][str(label)]['centers'] == len(rows) == len(centers[label])
    np.testing.assert_allclose(np.sort(centers[label], 0), np.sort(np.array(rows), 0),
                               atol=1e-5, err_msg=str(label))

  # A run that fails (no such checkpoint) leaves the file as it was.
  before = open(path, 'rb').read()
  assert encode_features.main([f'--workdir={workdir}', '--n_clusters=50',
                               '--checkpoint=7']) == 2
  err = capsys.readouterr().err
  assert err.startswith('p2p_jax.encode_features: error: ') and err.count('\n') == 1
  assert open(path, 'rb').read() == before

  # --num_images, --n_clusters: the first 3 images, at most 2 centers per label.
  assert encode_features.main([f'--workdir={workdir}', '--n_clusters=2',
                               '--num_images=3']) == 0
  centers, meta = fc.load(fc.clusters_path(workdir, 2))
  assert meta['images'] == 3 and all(len(c) <= 2 for c in centers.values())
  assert max(len(c) for c in centers.values()) == 2

  # encode() takes any batches (here in memory, label_feat: ids are the label maps).
  config = config.copy_and_resolve_references()
  config.pix2pixhd.update(instance_feat=False, label_feat=True)
  centers, meta = encode_features.encode(config, {'params': {'E': e_params}},
                                         iter(five_images()), 3)
  assert meta['images'] == 5 and meta['ids'] == 'label' and sorted(centers) == [0, 1, 2, 3]
  assert all(len(c) == 3 for c in centers.values())


def test_encode_features_refuses_a_run_without_the_feature_encoder(tmp_path, capsys):
  workdirs.save_config(hd_train.make_config('pix2pixhd_global'), str(tmp_path))
  assert encode_features.main([f'--workdir={tmp_path}']) == 2
  err = capsys.readouterr().err
  assert err == (f'p2p_jax.encode_features: error: {tmp_path} holds a pix2pixhd run without '
                 'the feature encoder (pix2pixhd.instance_feat / label_feat off): there are '
                 'no instance features to cluster (encode_features is for pix2pixHD trained '
                 'with --instance_feat or --label_feat)\n')
  assert encode_features.main([f'--workdir={tmp_path / "none"}']) == 2
  assert 'does not exist' in capsys.readouterr().err
  assert not any(n.startswith('features_clustered') for n in os.listdir(tmp_path))


def test_the_trainer_says_to_run_encode_features_before_translate(tmp_path, capsys):
  """A finished feature-encoder run's 'Next:' lines name encode_features until its
  clusters file exists; other runs' do not."""
  method = pix2pixhd.METHOD
  config = hd_train.make_config('pix2pixhd_global', instance_feat=True)
  workdir = str(tmp_path / 'my run')
  os.makedirs(workdir)
  before = method.commands_before_translate(config, workdir, 'best')
  assert before == [f"python -m p2p_jax.encode_features --workdir='{workdir}' --checkpoint=best"]
  train_logging.print_summary(workdir, 4, None, 'val', before_translate=tuple(before))
  lines = capsys.readouterr().out.splitlines()
  assert lines.index(f'  {before[0]}    # once, before translate') < next(
      i for i, l in enumerate(lines) if 'p2p_jax.translate' in l)
  fc.save(fc.clusters_path(workdir), {1: np.zeros((1, 3), np.float32)}, {})
  assert method.commands_before_translate(config, workdir) == []
  assert method.commands_before_translate(hd_train.make_config('pix2pixhd_global'),
                                          str(tmp_path)) == []
