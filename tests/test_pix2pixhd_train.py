"""pix2pixHD through the shared trainer: a global run, a local run started from it
(load_pretrain) that trains coarse to fine, exact resume through signals across the
switch, the VGG19 weights as the step's constant argument, and the one-line refusals.

Tiny networks (global part at 16 px, ngf 4, 2 scales of 2-layer Ds) on 32 px synthetic
label maps, instance maps and photos in the batch form of the labelled pipeline:
{'label' int32 [b, H, W], 'instance' int32 [b, H, W], 'target' float32 [b, H, W, 3]};
batch i is a function of (seed, i).
"""

import functools
import os
import signal

import jax
import numpy as np
import pytest

from p2p_jax import (checkpointing, config_schema, feature_clusters, label_maps, train,
                     translate, workdirs)
from test_train import assert_bit_equal, steps_on_disk

BATCH, SIZE, LABELS = 2, 32, 4
ONE_DEVICE = jax.devices()[:1]


def make_config(generator='pix2pixhd_local', **hd):
  """A tiny pix2pixHD: 2 steps per epoch (num_train_examples 4, batch 2), 5 steps."""
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.update(generator=generator, ngf=4 if generator == 'pix2pixhd_local' else 8,
                      ndf=4, norm='instance', d_layers=2)
  config.loss.gan_mode = 'lsgan'
  config.data.update(dataset='blue_marble', load_size=SIZE, crop_size=SIZE)
  config.pix2pixhd.update(label_nc=LABELS, n_downsample_global=2, n_blocks_global=1,
                          n_blocks_local=1, vgg_loss=False)
  config.pix2pixhd.update(**hd)
  config.batch_size = BATCH
  config.num_train_steps = 5
  config.optim.schedule = 'linear_decay_pix2pixhd'
  config.optim.update(constant_epochs=1, decay_epochs=2)
  config.log_every_steps = config.sample_every_steps = config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.keep_checkpoints = 5
  config.num_eval_examples = BATCH
  return config


def labelled(seed=0):
  def batches(start):
    i = start
    while True:
      rng = np.random.default_rng([seed, i])
      cells = rng.integers(0, LABELS, (BATCH, 8, 8))
      label = np.repeat(np.repeat(cells, 4, 1), 4, 2).astype(np.uint8)   # as the pipeline's
      instance = label.astype(np.int32) * 1000 + (np.arange(SIZE) >= SIZE // 2)
      target = np.tanh(rng.normal(size=(BATCH, SIZE, SIZE, 3))).astype(np.float32)
      yield {'label': label, 'instance': instance, 'target': target}
      i += 1
  return batches


def eval_batches():
  return iter([next(labelled(seed=1000)(0))])


def run(config, workdir, **kwargs):
  kwargs.setdefault('eval_batches', eval_batches)
  kwargs.setdefault('devices', ONE_DEVICE)
  return train.train_and_evaluate(config, str(workdir), train_batches=labelled(),
                                  num_train_examples=4, **kwargs)


@pytest.fixture(scope='module')
def global_run(tmp_path_factory):
  """A finished 2-step global run (ngf 8) with the VGG19 loss on weights made here, saved
  as torchvision saves them: what load_pretrain starts from."""
  torch = pytest.importorskip('torch')
  import torch_reference_hd as tr  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp('hd_global')
  vgg = tmp_path_factory.mktemp('torch_hub') / 'vgg19-dcbb9e9d.pth'
  torch.save(tr.vgg19_state_dict(seed=0), vgg)   # never a real file
  config = make_config('pix2pixhd_global', vgg_loss=True, vgg_weights=str(vgg))
  config.num_train_steps = 2
  return str(workdir), run(config, workdir)


@pytest.fixture(scope='module')
def local_run(tmp_path_factory, global_run):
  """An uninterrupted 5-step local run from the global one; the global part is fixed for
  niter_fix_global = 1 epoch (steps 0 and 1), everything trains from step 2 on."""
  workdir = tmp_path_factory.mktemp('hd_local')
  config = make_config(load_pretrain=global_run[0], niter_fix_global=1)
  return str(workdir), config, run(config, workdir)


def test_a_local_run_starts_from_the_global_one_and_trains_coarse_to_fine(local_run,
                                                                          global_run):
  workdir, _, state = local_run
  assert int(state.step) == 5 and steps_on_disk(workdir) == [2, 4, 5]
  global_g = global_run[1].g.params['G']
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    _, at_2 = ckpt.restore_generator(2)
    _, d_at_2 = ckpt.restore_generator(2, network='d')
  # Steps 0 and 1 kept the global part as loaded, bit for bit; later steps trained it.
  jax.tree.map(np.testing.assert_array_equal, at_2['params']['G']['model'],
               {k: v for k, v in global_g.items() if k != 'conv_out'})
  assert not np.array_equal(state.g.params['G']['model']['conv_in']['kernel'],
                            global_g['conv_in']['kernel'])
  # D's scales were copied by name and then trained (both runs have 2 scales).
  assert set(d_at_2['params']['D']) == {'scale0', 'scale1'}
  scalars = open(os.path.join(workdir, 'scalars.jsonl')).read()
  for name in ('G_GAN', 'G_GAN_Feat', 'D_real', 'D_fake', 'val_l1', 'lr'):
    assert f'"{name}"' in scalars, name
  assert '"G_VGG"' not in scalars
  assert sorted(os.listdir(os.path.join(workdir, 'samples')))[:1] == ['step_0000002.png']


def test_stops_and_resume_across_the_switch_match_an_uninterrupted_run(tmp_path, local_run,
                                                                       capsys):
  _, config, reference = local_run

  def send(signum, at_step):
    def hook(step):
      if step == at_step:
        os.kill(os.getpid(), signum)
    return hook

  state = run(config, tmp_path, step_hook=send(signal.SIGTERM, 1))   # before the switch
  assert int(state.step) == 1 and steps_on_disk(tmp_path) == [1]
  assert 'load_pretrain: global generator and D scale0, scale1' in capsys.readouterr().out
  state = run(config, tmp_path, step_hook=send(signal.SIGINT, 3))    # after it
  assert int(state.step) == 3
  assert 'load_pretrain' not in capsys.readouterr().out   # resumed: nothing loaded again
  state = run(config, tmp_path)
  assert int(state.step) == 5
  assert_bit_equal(state, reference)


def test_the_trained_generator_translates_label_maps(local_run, tmp_path):
  workdir = local_run[0]
  generator = workdirs.load_generator(workdir, devices=ONE_DEVICE)
  batch = next(eval_batches())
  x = generator.model_input(batch)
  assert x.shape == (BATCH, SIZE, SIZE, 2)
  out = generator.apply(x)
  assert out.shape == (BATCH, SIZE, SIZE, 3) and np.abs(out).max() <= 1
  shown = generator.shown_input(batch)
  np.testing.assert_array_equal(shown, label_maps.colorize(batch['label'], LABELS))
  # A label PNG of another size: padded to a multiple of 8, translated, cropped back.
  from PIL import Image  # pylint: disable=import-outside-toplevel
  path = str(tmp_path / 'labels.png')
  Image.fromarray(batch['label'][0, :30, :27].astype(np.uint8), mode='L').save(path)
  report = translate.translate_files(generator, [(path, str(tmp_path / 'out.png'))])
  assert report['written'] and not report['skipped']
  assert np.asarray(Image.open(tmp_path / 'out.png')).shape == (30, 27, 3)
  with pytest.raises(ValueError, match=r'label ids must be in 0..3'):
    translate.translate_images(generator, np.full((16, 16), 7, np.uint8))


def test_the_vgg_weights_are_read_from_their_file_and_stay_out_of_the_checkpoints(
    global_run, tmp_path):
  workdir, state = global_run
  scalars = open(os.path.join(workdir, 'scalars.jsonl')).read()
  assert '"G_VGG"' in scalars and '"G_GAN_Feat"' in scalars
  leaves = jax.tree_util.tree_leaves(state)
  assert not any(leaf.shape in ((3, 3, 512, 512), (512, 512, 3, 3)) for leaf in leaves)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    saved = checkpointing._saved_tree(ckpt.directory / '2' / checkpointing._ITEM)
  assert sorted(saved) == ['d', 'g', 'rng', 'step']
  # Missing: refused before anything is written, naming the path and the URL.
  config = make_config('pix2pixhd_global', vgg_loss=True)
  missing = tmp_path / 'nowhere' / 'vgg19-dcbb9e9d.pth'
  config.pix2pixhd.vgg_weights = str(missing)
  with pytest.raises(FileNotFoundError, match=f'{missing} .*https://download.pytorch.org/'
                     'models/vgg19-dcbb9e9d.pth'):
    run(config, tmp_path / 'w')
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.parametrize('change, message', [
    (dict(norm='batch'), r"config.model.norm must be 'instance' for method pix2pixhd"),
    (dict(generator='resnet_9blocks'),
     r"config.model.generator must be one of \['pix2pixhd_global'"),
    (dict(generator='pix2pixhd_global', niter_fix_global=2),
     r"config.pix2pixhd.niter_fix_global is for model.generator 'pix2pixhd_local'"),
    (dict(crop_size=12), r'config.data.crop_size \(12\) must be a multiple of 8'),
    (dict(crop_size=8), r'config.data.crop_size \(8\) must be at least 16'),
    (dict(instance_feat=True, label_feat=True),
     r'config.pix2pixhd.instance_feat and label_feat: set one'),
    (dict(instance_feat=True, instance_map=False),
     r'instance_feat averages features over instances: it needs '
     r'config.pix2pixhd.instance_map = True'),
    (dict(label_feat=True, label_nc=0),
     r'label_feat averages features over label classes: it needs label maps'),
    # E's 16 px (4 stride-2 convs, its default) is more than the local G's 8.
    (dict(instance_feat=True), r'config.data.crop_size \(24\) must be a multiple of 16'),
    (dict(instance_feat=True, spatial=2),
     r'config.compute.spatial > 1 with the feature encoder .* is not implemented'),
])
def test_bad_settings_are_one_line_before_any_work(tmp_path, change, message):
  config = make_config()
  change = dict(change)
  for key in ('norm', 'generator'):
    if key in change:
      config.model[key] = change.pop(key)
  if 'crop_size' in change:
    size = change.pop('crop_size')
    config.data.update(crop_size=size, load_size=size)
  elif 'instance_feat' in change and len(change) == 1:
    config.data.update(crop_size=24, load_size=24)
  if 'spatial' in change:
    config.compute.update(spatial=change.pop('spatial'), mapping='shard_map')
  config.pix2pixhd.update(**change)
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


def test_load_pretrain_must_be_a_global_run_of_twice_the_width(tmp_path, local_run):
  config = make_config(load_pretrain=local_run[0])   # a local run, not a global one
  with pytest.raises(ValueError, match=r"has model.generator 'pix2pixhd_local'; this local "
                     r"enhancer needs a global run with 'pix2pixhd_global'"):
    run(config, tmp_path / 'w')
  assert not os.path.exists(tmp_path / 'w')


def test_two_devices_step_as_one_with_the_vgg_weights_replicated():
  """The step per replica (gradients and losses averaged over the devices), the VGG19
  weights given once to parallel.DataParallel and replicated: two devices with one image
  each, under pmap and under shard_map, compute the step of one device with both."""
  torch = pytest.importorskip('torch')
  import torch_reference_hd as tr  # pylint: disable=import-outside-toplevel
  from p2p_jax import parallel  # pylint: disable=import-outside-toplevel
  from p2p_jax.methods import pix2pixhd  # pylint: disable=import-outside-toplevel
  from p2p_jax.models import vgg19  # pylint: disable=import-outside-toplevel
  del torch
  config = make_config('pix2pixhd_global', vgg_loss=True)
  kernels = vgg19.to_kernels({k: v.numpy() for k, v in tr.vgg19_state_dict(seed=3).items()})
  setup = pix2pixhd.METHOD.setup(config, 2, parallel.AXIS)
  runs = {}
  for mapping, devices in (('pmap', jax.devices()[:1]), ('pmap', jax.devices()[:2]),
                           ('shard_map', jax.devices()[:2])):
    runner = parallel.DataParallel(setup.step, mapping, devices=devices, donate=True,
                                   constants=kernels)
    state = runner.put_state(jax.jit(setup.init)())
    data = labelled()(0)
    for _ in range(2):
      state, m = runner(state, next(data))
    runs[mapping, len(devices)] = parallel.fetch(state), parallel.fetch(m)
  (state_1, metrics_1) = runs['pmap', 1]
  assert float(metrics_1['G_VGG']) > 0
  for state_2, metrics_2 in (runs['pmap', 2], runs['shard_map', 2]):
    for name in metrics_1:
      np.testing.assert_allclose(metrics_2[name], metrics_1[name], rtol=1e-5, err_msg=name)
    # Biases that instance norm follows change no output; their gradients are rounding
    # noise that Adam scales to +-lr (tests/test_pix2pixhd_trajectory.py). Not the others.
    for path, a in jax.tree_util.tree_leaves_with_path(state_2.g.params):
      key = jax.tree_util.keystr(path)
      if key.endswith("['bias']") and "['conv_out']" not in key:
        continue
      b = functools.reduce(lambda t, k: t[k.key], path, state_1.g.params)
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=key)


def test_the_optional_l1_term_is_off_by_default_and_weighted_when_on():
  """pix2pixhd.lambda_l1 (not in the official objective): absent at 0; at 100, G's loss
  gains 100 mean |G(x) - y| at the parameters before the update, and D's loss is the same."""
  from p2p_jax import networks, parallel  # pylint: disable=import-outside-toplevel
  from p2p_jax.methods import pix2pixhd  # pylint: disable=import-outside-toplevel
  batch = next(labelled()(0))
  metrics = {}
  for weight in (0.0, 100.0):
    config = make_config('pix2pixhd_global', lambda_l1=weight)
    setup = pix2pixhd.METHOD.setup(config, 2, parallel.AXIS)
    runner = parallel.DataParallel(setup.step, 'pmap', devices=ONE_DEVICE)
    state = runner.put_state(jax.jit(setup.init)())
    params = parallel.fetch(state).g.params
    _, m = runner(state, batch)
    metrics[weight] = {k: float(v) for k, v in parallel.fetch(m).items()}
  assert 'G_L1' not in metrics[0.0]
  on = metrics[100.0]
  x = pix2pixhd.encode_input(config, jax.tree.map(jax.numpy.asarray, batch))
  fake = networks.create_generator(config).apply({'params': params['G']}, x)
  expected = 100.0 * float(np.mean(np.abs(np.asarray(fake) - batch['target'])))
  np.testing.assert_allclose(on['G_L1'], expected, rtol=1e-5)
  np.testing.assert_allclose(on['G_total'], on['G_GAN'] + on['G_GAN_Feat'] + on['G_L1'],
                             rtol=1e-6)
  for name in ('G_GAN', 'G_GAN_Feat', 'D_total'):
    np.testing.assert_allclose(on[name], metrics[0.0][name], rtol=1e-6, err_msg=name)


def test_the_feature_encoder_learns_with_g_resumes_exactly_and_encodes_the_photo(tmp_path):
  """--instance_feat: E's parameters are G's optimiser's (they change with G's steps), a
  run stopped by a signal resumes bit for bit, and the trained generator encodes the photo
  given beside each label map: its features, averaged per instance, change the output,
  which depends on which pixels share an instance, not on the ids' values."""
  config = make_config('pix2pixhd_global', instance_feat=True, nef=4, n_downsample_E=2)
  config.num_train_steps = 3
  reference = run(config, tmp_path / 'a')
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(tmp_path / 'a'),
                                  read_only=True) as ckpt:
    _, at_2 = ckpt.restore_generator(2)
  assert set(at_2['params']) == {'G', 'E'}
  assert not np.array_equal(at_2['params']['E']['conv_in']['kernel'],
                            reference.g.params['E']['conv_in']['kernel'])

  def stop_at_1(step):
    if step == 1:
      os.kill(os.getpid(), signal.SIGTERM)
  assert int(run(config, tmp_path / 'b', step_hook=stop_at_1).step) == 1
  assert_bit_equal(run(config, tmp_path / 'b'), reference)

  generator = workdirs.load_generator(str(tmp_path / 'a'), devices=ONE_DEVICE)
  batch = next(eval_batches())
  x = generator.model_input(batch)    # label ids, instance ids, the photo
  assert x.shape == (BATCH, SIZE, SIZE, 5)
  np.testing.assert_array_equal(x[..., 2:], batch['target'])
  out = generator.apply(x)
  renamed = x.copy()
  renamed[..., 1] = renamed[..., 1] * 3 + 7     # the same instances under other ids
  np.testing.assert_allclose(generator.apply(renamed), out, atol=1e-6)
  other = x.copy()
  other[..., 2:] = -other[..., 2:]
  assert np.abs(generator.apply(other) - out).max() > 1e-3
  path = str(tmp_path / 'labels.png')
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.fromarray(batch['label'][0], mode='L').save(path)
  # Files have no photo: their features come from clusters, which encode_features makes.
  with pytest.raises(ValueError, match='run python -m p2p_jax.encode_features'):
    translate.translate_files(generator, [(path, str(tmp_path / 'out' / 'x.png'))])
  assert not os.path.exists(tmp_path / 'out')
  # With the workdir's clusters (here made up: two per label), each instance's features
  # are drawn from its label's, and the file is translated.
  centers = {label: np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3) * (label + 1) / 4
             for label in range(LABELS)}
  feature_clusters.save(feature_clusters.clusters_path(str(tmp_path / 'a')), centers, {})
  ids = np.stack([batch['label'][0], batch['label'][0]], -1)   # no instance file: labels
  draws = []
  for seed in (0, 1):   # translate --seed: other draws, another photo
    generator = workdirs.load_generator(str(tmp_path / 'a'), devices=ONE_DEVICE,
                                        for_files=True, seed=seed)
    x, _ = generator.image_to_model_input(ids)
    assert x.shape == (SIZE, SIZE, 5)
    np.testing.assert_array_equal(
        x[..., 2:], feature_clusters.sample_feature_map(centers, ids[..., 1], 3, seed=seed))
    draws.append(x[..., 2:])
  assert not np.array_equal(*draws)
  report = translate.translate_files(generator, [(path, str(tmp_path / 'out' / 'x.png'))])
  assert report['written'] == [str(tmp_path / 'out' / 'x.png')]
