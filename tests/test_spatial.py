"""Spatial partitioning (config.compute.spatial, p2p_jax/parallel.py): each image's height
split over 2 or 4 devices gives the step of one device that holds the whole image.

A tiny pix2pixHD (local enhancer, 2-scale D, feature matching) on 64 px label maps: the
losses, the gradients (Adam's first moment after one step is (1 - beta1) x gradient) and
the updated parameters of one step; then two replicas of two devices each against one
device with both images. VGG19 is checked on its own (its loss and gradient split over 2
devices equal one device's): inside the first step its max pooling amplifies rounding,
since the generator's output is then nearly uniform, most 2x2 windows of its features hold
near-ties, and which of four pixels gets the gradient is decided by the last bit, which the
split step's other order of instance norm's sums changes (measured: gradients within 1e-3
of their scale with VGG19 in the step, 2e-6 with its max pooling made an average).
Through the trainer: a pix2pix run (any method's step) with spatial 2 against one device,
and the one-line refusals.
"""

import functools

import jax
import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import config_schema, parallel, train
from p2p_jax.methods import pix2pixhd
from p2p_jax.models import vgg19

SIZE, LABELS = 64, 4


def hd_config():
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.update(generator='pix2pixhd_local', ngf=4, ndf=4, norm='instance',
                      d_layers=2)
  config.loss.gan_mode = 'lsgan'
  config.data.update(dataset='blue_marble', load_size=SIZE, crop_size=SIZE)
  config.pix2pixhd.update(label_nc=LABELS, n_downsample_global=2, n_blocks_global=1,
                          n_blocks_local=1, vgg_loss=False)
  config.compute.mapping = 'shard_map'
  return config


def labelled_batch(n, seed=0):
  # Labels drawn per pixel: no uniform regions, whose near-constant features make
  # rounding decide more (see the module docstring and tests/test_pix2pixhd_trajectory.py).
  rng = np.random.default_rng(seed)
  label = rng.integers(0, LABELS, (n, SIZE, SIZE)).astype(np.int32)
  instance = (label * 1000 + (np.arange(SIZE) >= SIZE // 2)).astype(np.int32)
  target = np.tanh(rng.normal(size=(n, SIZE, SIZE, 3))).astype(np.float32)
  return {'label': label, 'instance': instance, 'target': target}


def vgg_kernels():
  """VGG19's kernels from weights made here (torchvision's layout; never a download)."""
  rng = np.random.default_rng(7)
  return {i: (rng.normal(0, np.sqrt(2 / (9 * c)), (3, 3, c, o)).astype(np.float32),
              rng.normal(0, 0.01, (o,)).astype(np.float32))
          for i, (o, c) in vgg19.CONV_SHAPES.items()}


def one_step(setup, devices, spatial, batch):
  runner = parallel.DataParallel(setup.step, 'shard_map', devices=devices, spatial=spatial)
  state = runner.put_state(jax.jit(setup.init)())
  new_state, metrics = runner(state, batch)
  return parallel.fetch(new_state), parallel.fetch(metrics)


def assert_close(tree, reference, what, rtol, skip=lambda key: False):
  """Every leaf within rtol of the reference's largest magnitude in that leaf (so that
  values near zero are held to the leaf's scale, as float rounding is)."""
  checked = 0
  for path, a in jax.tree_util.tree_leaves_with_path(tree):
    key = jax.tree_util.keystr(path)
    if skip(key):
      continue
    b = functools.reduce(lambda t, k: t[getattr(k, 'key', getattr(k, 'name', None))]
                         if not hasattr(k, 'idx') else t[k.idx], path, reference)
    scale = max(float(np.max(np.abs(b))), 1e-12)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=f'{what} {key}')
    checked += 1
  assert checked


def moments(state):
  """Adam's first moments of G and D: 0.5 x the gradients after the first step."""
  return {'g': state.g.opt_state.mu, 'd': state.d.opt_state.mu}


# Biases that instance norm follows change no output: their gradients are rounding noise
# (which Adam scales to +-lr), as in tests/test_pix2pixhd_train.py. All others are held:
# G's conv_out, D's first (layer0) and last (layer3 with d_layers 2) convs.
def normed_bias(key):
  return key.endswith("['bias']") and not any(
      f"['{name}']" in key for name in ('conv_out', 'layer0', 'layer3'))


@pytest.fixture(scope='module')
def hd_reference():
  config = hd_config()
  setup = pix2pixhd.METHOD.setup(config, 2, parallel.AXIS)
  batch = labelled_batch(2)
  return config, setup, batch, one_step(setup, jax.devices()[:1], 1, batch)


def test_vgg19_split_over_devices_gives_the_same_loss_and_gradient():
  """The real max pooling (its argmax routing included) on images split by height."""
  kernels = vgg_kernels()
  rng = np.random.default_rng(3)
  x, y = (np.tanh(rng.normal(size=(2, SIZE, SIZE, 3))).astype(np.float32) for _ in range(2))
  grad = jax.jit(jax.value_and_grad(lambda x, y: vgg19.perceptual_loss(kernels, x, y)))
  loss_1, g_1 = grad(x, y)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ('h',))
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'h'))
  loss_2, g_2 = grad(jax.device_put(x, rows), jax.device_put(y, rows))
  assert len(g_2.sharding.device_set) == 2
  np.testing.assert_allclose(loss_2, loss_1, rtol=1e-6)
  np.testing.assert_allclose(g_2, g_1, rtol=0, atol=1e-6 * float(np.max(np.abs(g_1))))


@pytest.mark.parametrize('spatial', [2, 4])
def test_an_image_split_over_devices_steps_as_on_one(hd_reference, spatial):
  config, setup, batch, (state_1, metrics_1) = hd_reference
  del config
  state_n, metrics_n = one_step(setup, jax.devices()[:spatial], spatial, batch)
  assert set(metrics_n) == set(metrics_1)
  for name in metrics_1:
    np.testing.assert_allclose(metrics_n[name], metrics_1[name], rtol=2e-5, err_msg=name)
  assert float(metrics_1['G_GAN_Feat']) > 0
  assert_close(moments(state_n), moments(state_1), 'gradient', 1e-4, skip=normed_bias)
  assert_close(state_n.g.params, state_1.g.params, 'G param', 1e-4, skip=normed_bias)
  assert_close(state_n.d.params, state_1.d.params, 'D param', 1e-4, skip=normed_bias)


def test_two_replicas_of_two_devices_step_as_one_device(hd_reference):
  """Data and spatial parallelism together: 4 devices, 2 images, each over 2 devices."""
  _, setup, batch, (state_1, metrics_1) = hd_reference
  state_n, metrics_n = one_step(setup, jax.devices()[:4], 2, batch)
  for name in metrics_1:
    np.testing.assert_allclose(metrics_n[name], metrics_1[name], rtol=2e-5, err_msg=name)
  assert_close(moments(state_n), moments(state_1), 'gradient', 1e-4, skip=normed_bias)


def test_the_input_is_split_along_the_height():
  runner = parallel.DataParallel(lambda s, b: (s, {}), 'shard_map', jax.devices()[:4],
                                 spatial=2)
  assert dict(runner.mesh.shape) == {parallel.AXIS: 2, parallel.SPATIAL_AXIS: 2}
  split = runner._split(labelled_batch(2))  # pylint: disable=protected-access
  shards = {s.data.shape for s in split['target'].addressable_shards}
  assert shards == {(1, SIZE // 2, SIZE, 3)}
  assert {s.data.shape for s in split['label'].addressable_shards} == {(1, SIZE // 2, SIZE)}


@pytest.mark.parametrize('mapping,spatial', [('pmap', 1), ('shard_map', 1), ('shard_map', 2)])
def test_a_batch_of_shapes_lowers_as_the_batch_itself(mapping, spatial):
  """benchmarks/pix2pixhd_memory.py lowers for devices that cannot hold data (a GPU
  described, not present) from the batch's shapes: the program must be the one the
  trainer's numpy batch gives."""
  def step(state, batch):
    mean = jax.lax.pmean(batch['target'].mean(), parallel.AXIS)
    return jax.tree.map(lambda w: w + mean, state), {}
  runner = parallel.DataParallel(step, mapping, jax.devices()[:2], spatial=spatial)
  state = {'w': jax.ShapeDtypeStruct((3,), np.float32)}
  batch = labelled_batch(2)
  shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  assert runner.lower(state, shapes).as_text() == runner.lower(state, batch).as_text()


def test_the_trainer_splits_images_for_any_method(tmp_path):
  """pix2pix (U-Net, batch norm, dropout) through train.train_and_evaluate: spatial 2 on
  2 devices ends where one device does."""
  import test_train  # pylint: disable=import-outside-toplevel
  finals = {}
  for devices, spatial in ((jax.devices()[:1], 1), (jax.devices()[:2], 2)):
    config = test_train.make_config('shard_map')
    config.compute.spatial = spatial
    config.num_train_steps = 2
    finals[spatial] = parallel.fetch(train.train_and_evaluate(
        config, str(tmp_path / f'spatial{spatial}'), train_batches=test_train.synthetic(),
        eval_batches=test_train.eval_batches, num_train_examples=4, devices=devices))
  assert int(finals[2].step) == 2
  assert_close(finals[2].g.params, finals[1].g.params, 'G param', 1e-4)
  assert_close(finals[2].d.params, finals[1].d.params, 'D param', 1e-4)


@pytest.mark.parametrize('change, message', [
    ({'compute.spatial': 2, 'compute.mapping': 'pmap'},
     r"config.compute.spatial \(2\) needs config.compute.mapping 'shard_map'"),
    ({'compute.spatial': 0}, 'config.compute.spatial must be an integer >= 1'),
    ({'compute.spatial': 3, 'compute.mapping': 'shard_map'},
     r'config.compute.spatial \(3\) must divide config.data.crop_size \(32\)'),
])
def test_bad_settings_are_one_line(change, message):
  config = tiny_config()
  for key, value in change.items():
    block, field = key.split('.')
    config[block][field] = value
  with pytest.raises(ValueError, match=message):
    config_schema.validate(config)


def test_groups_must_fit_the_devices_and_the_batch():
  with pytest.raises(ValueError, match=r'config.compute.spatial \(3\) must divide the '
                     r'number of devices of each process \(4\)'):
    parallel.local_batch_size(2, jax.devices()[:4], spatial=3)
  with pytest.raises(ValueError, match=r'batch_size 3 must be divisible by the number of '
                     r'replicas \(2: 4 devices / compute.spatial 2\)'):
    parallel.local_batch_size(3, jax.devices()[:4], spatial=2)
  assert parallel.local_batch_size(4, jax.devices()[:8], spatial=4) == 4
