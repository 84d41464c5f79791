"""python -m p2p_jax.convert: reference .pth files into a workdir the other tools use as
their own (translate, evaluate's inference, fine-tuning), back out to .pth files the
reference's networks load strictly, and nothing written when the input does not fit."""

import os
import shutil
import time

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from p2p_jax import checkpointing, convert, state as state_lib, translate, workdirs
from p2p_jax.pytorch import weights as pw, workdir as workdir_lib
import test_train
import torch_reference as tr

TINY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs',
                    'tiny.py')


def reference_nets(seed=0):
  """configs/tiny.py's architecture as the reference builds it: unet_32, ngf 4; n_layers 2."""
  g = tr.init_weights(tr.UnetGenerator(3, 3, 5, 4, 'batch'), seed)
  d = tr.init_weights(tr.NLayerDiscriminator(6, 4, 2, 'batch'), seed + 1)
  return g, d


def save(sd, path, prefix='', counts=True):
  """A state_dict file as users have them: DataParallel's prefix, old files without
  num_batches_tracked."""
  torch.save({prefix + k: v for k, v in sd.items()
              if counts or not k.endswith('num_batches_tracked')}, path)
  return str(path)


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
  """(workdir, torch G, torch D, G file, D file) after a G + D import with configs/tiny.py."""
  tmp = tmp_path_factory.mktemp('convert')
  g, d = reference_nets()
  g_path = save(g.state_dict(), tmp / 'latest_net_G.pth', prefix='module.')
  d_path = save(d.state_dict(), tmp / 'latest_net_D.pth', counts=False)
  workdir = str(tmp / 'imported')
  rc = convert.main(['--from_pytorch', g_path, '--from_pytorch_d', d_path, '--workdir', workdir,
                     '--config', TINY, '--direction', 'BtoA'])
  assert rc == 0
  return workdir, g, d, g_path, d_path


def numpy_dict(net):
  return {k: v.detach().numpy() for k, v in net.state_dict().items()}


def test_import_writes_the_config_and_a_step_zero_checkpoint(imported):
  workdir, g, d, _, _ = imported
  config = workdirs.load_config(workdir)
  assert (config.model.generator, config.model.ngf, config.model.ndf, config.model.d_layers,
          config.model.norm, config.model.dropout_placement) == (
              'unet_32', 4, 4, 2, 'batch', 'pytorch')
  assert config.data.dataset == 'blue_marble' and config.data.direction == 'BtoA'  # --config
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    assert ckpt.all_steps() == [0]
    _, g_saved = ckpt.restore_generator(0)
    _, d_saved = ckpt.restore_generator(0, network='d')
  g_want, d_want, _ = pw.from_torch(numpy_dict(g), numpy_dict(d))
  for saved, want in ((g_saved, g_want), (d_saved, d_want)):
    assert jax.tree.all(jax.tree.map(np.array_equal, saved, want))


def test_translate_gives_the_reference_outputs(imported):
  """Through translate's own loading path, eval mode against net.eval() (batch-statistics
  mode is compared in test_pytorch_weights.py)."""
  workdir, g, _, _, _ = imported
  x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  g.eval()
  with torch.no_grad():
    want = g(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  generator = workdirs.load_generator(workdir, mode='eval')
  got = np.stack(translate.translate_images(generator, list(x)))
  assert np.abs(got - want).max() < 1e-4


def test_fine_tuning_resumes_from_step_zero(imported, tmp_path):
  workdir = str(tmp_path / 'finetune')
  shutil.copytree(imported[0], workdir)
  config = workdirs.load_config(workdir)
  config.batch_size = test_train.BATCH
  config.num_train_steps = 2
  config.log_every_steps = config.eval_every_steps = config.sample_every_steps = 2
  config.checkpoint_every_steps = 2
  config.num_eval_examples = test_train.BATCH
  state = test_train.run(config, workdir)
  assert int(state.step) == 2
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    assert ckpt.all_steps() == [0, 2]


def test_export_round_trip_loads_strictly_and_refuses_to_overwrite(imported, tmp_path, capsys):
  workdir, g, d, _, _ = imported
  out_g, out_d = str(tmp_path / 'net_G.pth'), str(tmp_path / 'net_D.pth')
  args = ['--workdir', workdir, '--to_pytorch', out_g, '--to_pytorch_d', out_d,
          '--checkpoint', '0']
  assert convert.main(args) == 0
  for path, original, make in ((out_g, g, lambda: tr.UnetGenerator(3, 3, 5, 4, 'batch')),
                               (out_d, d, lambda: tr.NLayerDiscriminator(6, 4, 2, 'batch'))):
    sd = torch.load(path, weights_only=True)
    make().load_state_dict(sd, strict=True)
    for key, value in original.state_dict().items():
      if not key.endswith('num_batches_tracked'):
        assert torch.equal(sd[key], value), key
  before = open(out_g, 'rb').read()
  capsys.readouterr()
  assert convert.main(args) == 2
  assert 'exists; pass --overwrite' in capsys.readouterr().err
  assert open(out_g, 'rb').read() == before
  assert convert.main(args + ['--overwrite']) == 0


def test_g_alone_gets_the_seeds_d(tmp_path):
  g, _ = reference_nets(seed=3)
  workdir = str(tmp_path / 'w')
  assert convert.main(['--from_pytorch', save(g.state_dict(), tmp_path / 'g.pth'),
                       '--workdir', workdir, '--config', TINY, '--seed', '7']) == 0
  config = workdirs.load_config(workdir)
  assert config.seed == 7 and config.model.dropout_placement == 'pytorch'
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    _, d_saved = ckpt.restore_generator(0, network='d')
  fresh = workdir_lib.build_state(config, pw.generator_from_torch(numpy_dict(g))[0])
  assert jax.tree.all(jax.tree.map(np.array_equal, d_saved['params'], fresh.d.params))
  assert state_lib.param_count(d_saved['params']) == state_lib.param_count(fresh.d.params)


# ---------------------------------------------------------------- bad input


def resnet_g():
  """Keys of the reference's resnet_9blocks G (CycleGAN's), abridged to one block (a
  misfit: p2p_jax has no 1-block ResNet); whole CycleGAN files: test_convert_cyclegan.py."""
  return {'model.1.weight': torch.zeros(64, 3, 7, 7), 'model.2.weight': torch.ones(64),
          'model.10.conv_block.1.weight': torch.zeros(256, 256, 3, 3)}


def bad_inputs(tmp_path):
  """(file, text the one-line error must hold) for inputs that do not fit."""
  g, d = reference_nets()
  resnet = tmp_path / 'cyclegan_G.pth'
  torch.save(resnet_g(), resnet)
  good = open(save(g.state_dict(), tmp_path / 'good.pth'), 'rb').read()
  cut = tmp_path / 'cut.pth'
  cut.write_bytes(good[:len(good) // 2])
  text = tmp_path / 'notes.pth'
  text.write_text('not a checkpoint\n')
  misfit = dict(g.state_dict())
  misfit['model.model.1.model.5.weight'] = torch.zeros(3, 3, 4, 4)
  return [(str(resnet), f'{resnet}: a ResnetGenerator with 1 residual blocks is not one of'),
          (str(cut), f'{cut}: not a readable PyTorch file'),
          (str(text), f'{text}: not a readable PyTorch file'),
          (save(misfit, tmp_path / 'misfit.pth'),
           'model.model.1.model.5.weight has shape (3, 3, 4, 4)')]


def test_bad_files_give_one_line_and_write_nothing(tmp_path, capsys):
  for path, message in bad_inputs(tmp_path):
    workdir = tmp_path / f'w_{os.path.basename(path)}'
    start = time.time()
    assert convert.main(['--from_pytorch', path, '--workdir', str(workdir)]) == 2, path
    err = capsys.readouterr().err.strip()
    assert message in err and '\n' not in err and 'Traceback' not in err, err
    assert not workdir.exists() and time.time() - start < 30
    assert not [n for n in os.listdir(tmp_path) if 'converting' in n]


def test_workdirs_holding_a_model_are_refused_untouched(imported, tmp_path, capsys):
  workdir, g, _, g_path, _ = imported
  before = sorted(os.listdir(workdir)), open(os.path.join(workdir, 'config.json')).read()
  assert convert.main(['--from_pytorch', g_path, '--workdir', workdir, '--config', TINY]) == 2
  assert 'already holds checkpoints' in capsys.readouterr().err
  other = tmp_path / 'other'
  other.mkdir()
  wide = tr.init_weights(tr.UnetGenerator(3, 3, 5, 8, 'batch'))  # ngf 8, not 4
  (other / 'config.json').write_text(open(os.path.join(workdir, 'config.json')).read())
  assert convert.main(['--from_pytorch', save(wide.state_dict(), tmp_path / 'wide.pth'),
                       '--workdir', str(other), '--config', TINY]) == 2
  assert 'another architecture' in capsys.readouterr().err
  assert os.listdir(other) == ['config.json']
  assert (sorted(os.listdir(workdir)),
          open(os.path.join(workdir, 'config.json')).read()) == before


def test_a_failed_import_into_an_empty_folder_leaves_it_empty(imported, tmp_path,
                                                              monkeypatch, capsys):
  """The workdir is made beside the folder and renamed onto it whole: a full disk half way
  (here at config.json, after the checkpoint) leaves the folder as it was, empty."""
  g_path = imported[3]
  empty = tmp_path / 'empty'
  empty.mkdir()

  def full(*args, **kwargs):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(workdirs, 'save_config', full)
  assert convert.main(['--from_pytorch', g_path, '--workdir', str(empty), '--config',
                       TINY]) == 2
  err = capsys.readouterr().err
  assert f'error: {empty}: No space left on device' in err and err.count('\n') == 1, err
  assert os.listdir(empty) == [] and os.listdir(tmp_path) == ['empty']
  # Into a new workdir whose parent folders are new too: none of them is left.
  assert convert.main(['--from_pytorch', g_path, '--workdir', str(tmp_path / 'a' / 'b' / 'w'),
                       '--config', TINY]) == 2
  assert os.listdir(tmp_path) == ['empty']
  capsys.readouterr()
  monkeypatch.undo()
  # The disk full at the checkpoint: said in convert's words (no "resume", no name of the
  # folder being made).
  monkeypatch.setattr(checkpointing.ocp.CheckpointManager, 'save', full)
  assert convert.main(['--from_pytorch', g_path, '--workdir', str(tmp_path / 'c' / 'w'),
                       '--config', TINY]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'p2p_jax.convert: error: writing the checkpoint into '
                        f'{tmp_path / "c" / "w"} failed: no space left on the device'), err
  assert err.strip().endswith('nothing was written') and err.count('\n') == 1, err
  assert os.listdir(tmp_path) == ['empty']
  monkeypatch.undo()
  # Into an empty folder through a symlink, and as `.`: the entries land in the folder.
  os.symlink(empty, tmp_path / 'link')
  assert convert.main(['--from_pytorch', g_path, '--workdir', str(tmp_path / 'link'),
                       '--config', TINY]) == 0
  assert os.path.islink(tmp_path / 'link')
  assert sorted(os.listdir(empty)) == ['checkpoints', 'config.json', workdirs.IMPORT_FILE]
  here = tmp_path / 'here'
  here.mkdir()
  monkeypatch.chdir(here)
  assert convert.main(['--from_pytorch', g_path, '--workdir', '.', '--config', TINY]) == 0
  assert sorted(os.listdir(here)) == ['checkpoints', 'config.json', workdirs.IMPORT_FILE]
  assert sorted(os.listdir(tmp_path)) == ['empty', 'here', 'link']


def test_help_and_flags_that_do_not_go_together(capsys):
  with pytest.raises(SystemExit) as e:
    convert.main(['--help'])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for flag in ('from_pytorch', 'from_pytorch_d', 'to_pytorch', 'to_pytorch_d', 'pretrained',
               'pretrained_dir', 'workdir', 'config', 'direction', 'norm', 'seed',
               'checkpoint', 'overwrite'):
    assert f'--{flag}' in out
  for argv, message in ((['--workdir=w'], 'exactly one of'),
                        (['--from_pytorch=g.pth'], 'needs --workdir'),
                        (['--to_pytorch=g.pth', '--workdir=w', '--seed=1'],
                         '--seed cannot be used with --to_pytorch'),
                        (['--from_pytorch=g.pth', '--to_pytorch=h.pth', '--workdir=w'],
                         'exactly one of')):
    assert convert.main(argv) == 2
    assert message in capsys.readouterr().err
