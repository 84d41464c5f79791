"""python -m p2p_jax.convert with CycleGAN: the reference's training folder (latest_net_G_A,
G_B, D_A, D_B) into a CycleGAN workdir that translates both ways, fine-tunes and resumes;
back to four .pth files the reference's networks load strictly; a lone G (as published);
and one line, nothing written, for files of the other method or of the wrong kind."""

import os
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from p2p_jax import (checkpointing, config_schema, convert, methods, parallel, translate,
                     workdirs)
from p2p_jax.pytorch import cyclegan_workdir
import test_train
import torch_reference as tr
from test_convert import TINY, reference_nets as pix2pix_nets, save

CONFIG = '''
from p2p_jax import config_schema


def get_config():
  config = config_schema.get_config()
  config.method = 'cyclegan'
  config.loss.gan_mode = 'lsgan'
  config.model.generator, config.model.ngf, config.model.ndf = 'resnet_2blocks', 4, 4
  config.model.d_layers, config.model.norm, config.model.dropout = 2, 'instance', False
  config.data.dataset, config.data.direction = 'blue_marble', 'AtoB'
  config.data.pairs_as_unpaired = True  # the embedded pairs read as two domains
  config.data.load_size, config.data.crop_size, config.data.eval_split = 36, 32, 'test'
  config.cyclegan.pool_size = 3
  return config
'''


def cyclegan_nets(seed=0, norm='instance'):
  """A reference CycleGAN at the config's size: two resnet_2blocks Gs and two one-image
  PatchGANs; D_B saved as PyTorch 0.3 saved instance norms (with running statistics)."""
  g = lambda s: tr.init_weights(tr.ResnetGenerator(3, 3, 4, norm, False, 2), s)
  d = lambda s, n: tr.init_weights(tr.NLayerDiscriminator(3, 4, 2, n), s)
  return {'G_A': g(seed), 'G_B': g(seed + 1), 'D_A': d(seed + 2, norm),
          'D_B': d(seed + 3, 'instance_tracked' if norm == 'instance' else norm)}


def save_run(nets, folder, epoch='latest'):
  folder.mkdir(parents=True, exist_ok=True)
  for name, net in nets.items():
    torch.save(net.state_dict(), folder / f'{epoch}_net_{name}.pth')
  return str(folder)


def numpy_dict(net):
  return {k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('cyclegan_convert')
  (tmp / 'tiny_cyclegan.py').write_text(CONFIG)
  nets = cyclegan_nets()
  return {'tmp': tmp, 'config': str(tmp / 'tiny_cyclegan.py'), 'nets': nets,
          'run': save_run(nets, tmp / 'checkpoints' / 'h2z')}


@pytest.fixture(scope='module')
def imported(files):
  workdir = str(files['tmp'] / 'imported')
  assert convert.main(['--from_pytorch', files['run'], '--workdir', workdir,
                       '--config', files['config']]) == 0
  return workdir


def test_a_training_folder_becomes_a_cyclegan_state_at_step_zero(files, imported):
  config = workdirs.load_config(imported)
  assert config.method == 'cyclegan' and config.cyclegan.pool_size == 3
  assert (config.model.generator, config.model.ngf, config.model.ndf, config.model.d_layers,
          config.model.norm, config.model.dropout) == ('resnet_2blocks', 4, 4, 2, 'instance',
                                                       False)
  setup = methods.get(config).setup(config, 1, parallel.AXIS)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(imported), read_only=True) as ckpt:
    assert ckpt.all_steps() == [0]
    state = jax.device_get(ckpt.restore(jax.eval_shape(setup.init), 0))
  want, _ = cyclegan_workdir.networks_from_torch(
      {n: numpy_dict(net) for n, net in files['nets'].items()})
  for name, variables in want.items():
    net = state.g if name.startswith('G') else state.d
    assert jax.tree.all(jax.tree.map(np.array_equal, net.params[name], variables['params']))
  assert int(state.step) == 0
  assert all(int(p.count) == 0 for p in state.pools.values())  # empty pools
  fresh = jax.device_get(jax.jit(setup.init)())  # the trainer's key, fresh Adam
  assert np.array_equal(state.rng, fresh.rng)
  assert all(not np.any(x) for x in jax.tree.leaves((state.g.opt_state, state.d.opt_state))
             if np.ndim(x))
  workdirs.check_generator_trained(imported, 0, 'BtoA')  # both generators converted


@pytest.mark.parametrize('direction,name', [('AtoB', 'G_A'), ('BtoA', 'G_B')])
def test_translate_uses_g_a_and_g_b(files, imported, direction, name):
  x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  net = files['nets'][name].eval()
  with torch.no_grad():
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  generator = workdirs.load_generator(imported, mode='eval', direction=direction)
  got = np.stack(translate.translate_images(generator, list(x)))
  assert np.abs(got - want).max() < 1e-4


def test_fine_tuning_resumes_from_step_zero(imported, tmp_path):
  workdir = str(tmp_path / 'finetune')
  shutil.copytree(imported, workdir)
  config = workdirs.load_config(workdir)
  config.batch_size = test_train.BATCH
  config.num_train_steps = 2
  config.log_every_steps = config.eval_every_steps = config.sample_every_steps = 2
  config.checkpoint_every_steps = 2
  config.num_eval_examples = test_train.BATCH
  state = test_train.run(config, workdir)
  assert int(state.step) == 2 and int(state.pools['fake_A'].count) == 3  # filled
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir), read_only=True) as ckpt:
    assert ckpt.all_steps() == [0, 2]


def test_export_writes_four_files_the_reference_loads_strictly(files, imported, tmp_path,
                                                               capsys):
  out = tmp_path / 'torch_run'
  assert convert.main(['--workdir', imported, '--to_pytorch', str(out), '--checkpoint=0']) == 0
  assert sorted(os.listdir(out)) == [f'latest_net_{n}.pth' for n in ('D_A', 'D_B', 'G_A',
                                                                      'G_B')]
  for name, original in files['nets'].items():
    sd = torch.load(out / f'latest_net_{name}.pth', weights_only=True)
    fresh = (tr.ResnetGenerator(3, 3, 4, 'instance', False, 2) if name.startswith('G')
             else tr.NLayerDiscriminator(3, 4, 2, 'instance'))
    fresh.load_state_dict(sd, strict=True)  # D_B without the old file's statistics
    for key, value in sd.items():
      assert torch.equal(value, original.state_dict()[key]), (name, key)
  capsys.readouterr()
  assert convert.main(['--workdir', imported, '--to_pytorch', str(out)]) == 2
  assert 'exists; pass --overwrite' in capsys.readouterr().err
  g_only = tmp_path / 'g_a.pth'  # a .pth file: the generator alone; others by flag
  assert convert.main(['--workdir', imported, '--to_pytorch', str(g_only),
                       '--to_pytorch_g_b', str(tmp_path / 'g_b.pth')]) == 0
  assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ['g_a.pth', 'g_b.pth']
  # A folder that is a file (no .pth ending), or a link to nothing: named, nothing written.
  (tmp_path / 'a_file').write_text('mine')
  os.symlink(tmp_path / 'gone', tmp_path / 'link')
  capsys.readouterr()
  assert convert.main(['--workdir', imported, '--to_pytorch', str(tmp_path / 'a_file')]) == 2
  assert f'{tmp_path / "a_file"} is a file' in capsys.readouterr().err
  assert convert.main(['--workdir', imported, '--to_pytorch', str(tmp_path / 'link')]) == 2
  assert 'link is a symbolic link to' in capsys.readouterr().err
  assert (tmp_path / 'a_file').read_text() == 'mine' and not (tmp_path / 'gone').exists()


def test_a_lone_published_style_g_refuses_btoa_and_exports_without_g_b(files, tmp_path,
                                                                       capsys):
  path = tmp_path / 'checkpoints' / 'h2z_pretrained'  # as download_cyclegan_model.sh saves
  path.mkdir(parents=True)
  torch.save(files['nets']['G_A'].state_dict(), path / 'latest_net_G.pth')
  workdir = str(tmp_path / 'lone')
  assert convert.main(['--from_pytorch', str(path), '--workdir', workdir,
                       '--config', files['config']]) == 0
  assert 'G_B, D_A, D_B initialised from seed 0' in capsys.readouterr().out
  image = tmp_path / 'x.png'
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
  args = ['--workdir', workdir, '--input', str(image), '--output', str(tmp_path / 'y.png')]
  assert translate.main(args + ['--direction=AtoB']) == 0
  capsys.readouterr()
  assert translate.main(args + ['--direction=BtoA']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'has no trained BtoA generator at checkpoint step 0' in err
  assert 'G_B was initialised from seed 0, not converted' in err
  out = tmp_path / 'back'
  assert convert.main(['--workdir', workdir, '--to_pytorch', str(out)]) == 0
  assert 'not written' in capsys.readouterr().out
  assert sorted(os.listdir(out)) == ['latest_net_D_A.pth', 'latest_net_D_B.pth',
                                     'latest_net_G_A.pth']
  assert convert.main(['--workdir', workdir, '--to_pytorch', str(tmp_path / 'a.pth'),
                       '--to_pytorch_g_b', str(tmp_path / 'b.pth')]) == 2
  assert 'no trained BtoA generator' in capsys.readouterr().err
  assert not (tmp_path / 'a.pth').exists()


# ---------------------------------------------------------------- bad input


def bad_cases(files, tmp):
  """(argv without --workdir, the text the one-line error must hold)."""
  nets, cfg = files['nets'], files['config']
  g_a = save(nets['G_A'].state_dict(), tmp / 'G_A.pth')
  d_a = save(nets['D_A'].state_dict(), tmp / 'D_A.pth')
  p2p_g, p2p_d = pix2pix_nets()
  unet = save(p2p_g.state_dict(), tmp / 'unet_G.pth')
  p2p_d = save(p2p_d.state_dict(), tmp / 'pix2pix_D.pth')
  data = open(save(nets['G_B'].state_dict(), tmp / 'whole_G_B.pth'), 'rb').read()
  cut = tmp / 'cut_G_B.pth'
  cut.write_bytes(data[:len(data) // 2])
  wide = save(tr.ResnetGenerator(3, 3, 8, 'instance', False, 2).state_dict(), tmp / 'w.pth')
  return [
      # A CycleGAN .pth where a pix2pix one is expected, and the reverse.
      (['--from_pytorch', g_a, '--config', TINY],
       "G_A.pth holds the reference's ResnetGenerator (CycleGAN's generator), but --config is "
       'a pix2pix config: pass --method=pix2pix'),
      (['--from_pytorch', unet, '--config', cfg],
       "unet_G.pth holds the reference's UnetGenerator (pix2pix's generator), but --config is "
       'a cyclegan config'),
      (['--from_pytorch', unet, '--from_pytorch_d', d_a, '--config', TINY],
       "D_A.pth: D's first conv takes 3 channels (a D of one image, as CycleGAN's D_A / D_B), "
       "but pix2pix's D sees x and G(x): 3 + 3"),
      (['--from_pytorch', g_a, '--from_pytorch_d', p2p_d],
       "pix2pix_D.pth: D_A's first conv takes 6 channels (x and y: pix2pix's D), but "
       "CycleGAN's D_A judges one domain-B image of 3 channels"),
      (['--from_pytorch', unet, '--from_pytorch_g_b', g_a, '--method', 'pix2pix'],
       "G_A.pth: G_B / D_B are CycleGAN's networks"),
      # A D given as G, the other way round, a truncated file, G_B of another width.
      (['--from_pytorch', d_a], "D_A.pth: holds the reference's NLayerDiscriminator (the "
                                'PatchGAN discriminator), not a generator'),
      (['--from_pytorch', g_a, '--from_pytorch_d', g_a],
       "G_A.pth: model.1.weight is not a key of the reference's NLayerDiscriminator"),
      (['--from_pytorch', g_a, '--from_pytorch_g_b', str(cut)],
       'cut_G_B.pth: not a readable PyTorch file'),
      (['--from_pytorch', g_a, '--from_pytorch_g_b', wide],
       "w.pth: G_B is a resnet_2blocks (ngf 8, 3 -> 3 channels, instance norm), but it must "
       "map G_A's output back: resnet_2blocks (ngf 4"),
  ]


def test_files_of_the_other_method_or_kind_give_one_line_and_write_nothing(files, tmp_path,
                                                                           capsys):
  for i, (argv, message) in enumerate(bad_cases(files, tmp_path)):
    workdir = tmp_path / f'w{i}'
    assert convert.main(argv + ['--workdir', str(workdir)]) == 2, argv
    err = capsys.readouterr().err.strip()
    assert message in err and '\n' not in err and 'Traceback' not in err, (argv, err)
    assert not workdir.exists()
  assert not [n for n in os.listdir(tmp_path) if 'converting' in n]


def test_a_cyclegan_run_into_a_pix2pix_workdir_and_folder_flag_rules(files, tmp_path, capsys):
  pix2pix = tmp_path / 'pix2pix'  # a pix2pix run's config.json, no checkpoint yet
  pix2pix.mkdir()
  workdirs.save_config(config_schema.load_file(TINY), str(pix2pix))
  assert convert.main(['--from_pytorch', files['run'], '--workdir', str(pix2pix)]) == 2
  assert 'holds a pix2pix run, not cyclegan' in capsys.readouterr().err
  assert os.listdir(pix2pix) == ['config.json']
  for argv, message in (
      (['--from_pytorch', files['run'], '--from_pytorch_d', 'd.pth'], 'is a folder'),
      (['--from_pytorch', 'g.pth', '--pytorch_epoch', '5'], '--pytorch_epoch names the files'),
      (['--from_pytorch', str(tmp_path)], 'holds neither latest_net_G_A.pth (CycleGAN) nor '
                                          'latest_net_G.pth (pix2pix)')):
    assert convert.main(argv + ['--workdir', str(tmp_path / 'w')]) == 2
    assert message in capsys.readouterr().err
  epoch = save_run(files['nets'], tmp_path / 'epochs', epoch='5')
  assert convert.main(['--from_pytorch', epoch, '--pytorch_epoch', '5', '--workdir',
                       str(tmp_path / 'w5'), '--config', files['config']]) == 0
