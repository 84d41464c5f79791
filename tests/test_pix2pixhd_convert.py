"""The official pix2pixHD files through `convert`, `translate` and back: a LocalEnhancer
(the published label2city_1024p's kind, small) and its MultiscaleDiscriminator saved as
the official code saves them, imported into a workdir that translates a Cityscapes-style
label map (with its instance map found beside it) as the official network does, and
exported back to files the official networks load with strict=True; and a model trained
with the instance-wise feature encoder (latest_net_E.pth beside G and D) the same way, its
[label, instance, photo] inference checked against the official netE -> netG pipeline."""

import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position  (after importorskip)
from PIL import Image
from p2p_jax import convert, label_maps, translate, workdirs
import torch_reference_hd as tr

LABELS = 4
CONFIG = '''
from p2p_jax import config_schema

def get_config():
  config = config_schema.get_config()
  config.method = 'pix2pixhd'
  config.model.update(norm='instance', d_layers=2)
  config.loss.gan_mode = 'lsgan'
  config.data.update(load_size=32, crop_size=32)
  config.pix2pixhd.label_nc = {labels}
  return config
'''


@pytest.fixture(scope='module')
def official(tmp_path_factory):
  """latest_net_G.pth / latest_net_D.pth as the official save_network writes them."""
  folder = tmp_path_factory.mktemp('label2city_small')
  g = tr.init_weights(tr.LocalEnhancer(LABELS + 1, 3, 4, n_down=2, n_blocks=1,
                                       n_blocks_local=1), 0)
  d = tr.init_weights(tr.MultiscaleDiscriminator(LABELS + 1 + 3, 4, 2, num_D=3), 1)
  torch.save(g.state_dict(), folder / 'latest_net_G.pth')
  torch.save(d.state_dict(), folder / 'latest_net_D.pth')
  config = folder / 'config.py'
  config.write_text(CONFIG.format(labels=LABELS))
  return folder, g, d


def test_import_translate_and_export_the_official_files(official, tmp_path, capsys):
  folder, g, d = official
  workdir = str(tmp_path / 'imported')
  g_file, d_file = str(folder / 'latest_net_G.pth'), str(folder / 'latest_net_D.pth')
  # Without a config the labels are the published model's (35 + edges): refused, by name.
  assert convert.main([f'--from_pytorch={g_file}', f'--workdir={workdir}']) == 2
  assert "first conv takes 5 channels, but config.pix2pixhd.label_nc 35" in (
      capsys.readouterr().err)
  assert not os.path.exists(workdir)
  assert convert.main([f'--from_pytorch={g_file}', f'--from_pytorch_d={d_file}',
                       f'--config={folder / "config.py"}', f'--workdir={workdir}']) == 0
  assert 'converted pix2pixHD pix2pixhd_local G (ngf 4' in capsys.readouterr().out
  config = workdirs.load_config(workdir)
  assert (config.method, config.pix2pixhd.num_D, config.model.d_layers) == ('pix2pixhd', 3, 2)

  # A Cityscapes-style test pair: the label map and its instance map beside it.
  rng = np.random.default_rng(0)
  label = np.repeat(np.repeat(rng.integers(0, LABELS, (6, 10)), 4, 0), 4, 1).astype(np.uint8)
  instance = (label.astype(np.int32) * 1000 + (np.arange(40) >= 20)).astype(np.int32)
  src = tmp_path / 'test_label'
  src.mkdir()
  Image.fromarray(label, mode='L').save(src / 'x_gtFine_labelIds.png')
  Image.fromarray(instance.astype(np.uint16)).save(src / 'x_gtFine_instanceIds.png')  # 16 bit
  assert label_maps.find_instance_map(str(src / 'x_gtFine_labelIds.png')) == str(
      src / 'x_gtFine_instanceIds.png')
  out = tmp_path / 'out.png'
  assert translate.main([f'--workdir={workdir}', f'--input={src / "x_gtFine_labelIds.png"}',
                         f'--output={out}']) == 0
  got = np.asarray(Image.open(out))
  x = tr.encode_input(torch.from_numpy(label[None, None].astype(np.int64)),
                      torch.from_numpy(instance[None, None]), LABELS)
  want = ((g(x)[0].detach().numpy().transpose(1, 2, 0) + 1) * 127.5)
  assert got.shape == (24, 40, 3)
  assert np.max(np.abs(got - want)) <= 0.51 + 1e-3   # rounding to uint8 only

  # Back to the official layout: the official networks load it strictly, unchanged.
  g_out, d_out = str(tmp_path / 'G.pth'), str(tmp_path / 'D.pth')
  assert convert.main([f'--workdir={workdir}', f'--to_pytorch={g_out}',
                       f'--to_pytorch_d={d_out}']) == 0
  for net, path in ((g, g_out), (d, d_out)):
    sd = torch.load(path, weights_only=True)
    fresh = type(net)(*(
        (LABELS + 1, 3, 4, 2, 1, 1) if net is g else (LABELS + 4, 4, 2, 3)))
    fresh.load_state_dict(sd, strict=True)
    for key, value in net.state_dict().items():
      assert torch.equal(sd[key], value), key


# ---------------------------------------------------------------- the feature encoder

FEAT = 3   # the official --feat_num


@pytest.fixture(scope='module')
def official_feat(tmp_path_factory):
  """A run trained with --instance_feat as the official code saves it: G takes the one-hot
  labels, the instance edges and E's features; E (netE) encodes the photo; D sees the
  labels, edges and the image (no features)."""
  folder = tmp_path_factory.mktemp('label2city_feat')
  g = tr.init_weights(tr.GlobalGenerator(LABELS + 1 + FEAT, 3, 4, n_down=2, n_blocks=1), 2)
  e = tr.init_weights(tr.Encoder(3, FEAT, 4, n_down=2), 3)
  d = tr.init_weights(tr.MultiscaleDiscriminator(LABELS + 1 + 3, 4, 2, num_D=2), 4)
  for name, net in (('G', g), ('E', e), ('D', d)):
    torch.save(net.state_dict(), folder / f'latest_net_{name}.pth')
  config = folder / 'config.py'
  config.write_text(CONFIG.format(labels=LABELS))
  return folder, g, e, d


def test_feature_encoder_model_imports_translates_and_exports(official_feat, tmp_path,
                                                              capsys):
  folder, g, e, d = official_feat
  workdir = str(tmp_path / 'feat')
  assert convert.main([f'--from_pytorch={folder}', f'--config={folder / "config.py"}',
                       f'--workdir={workdir}']) == 0
  assert '+ feature encoder E (3 features per instance' in capsys.readouterr().out
  hd = workdirs.load_config(workdir).pix2pixhd
  assert (hd.instance_feat, hd.label_feat, hd.feat_num, hd.nef, hd.n_downsample_E) == (
      True, False, FEAT, 4, 2)

  # Inference as evaluate runs it: [label, instance, photo] -> E's instance means -> G.
  rng = np.random.default_rng(1)
  label = np.repeat(np.repeat(rng.integers(0, LABELS, (2, 4, 4)), 8, 1), 8, 2)
  instance = label * 1000 + (np.arange(32) >= 16)            # two objects of each class
  photo = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  x = np.concatenate([label[..., None], instance[..., None], photo], -1)
  got = workdirs.load_generator(workdir).apply(x)
  inst_t = torch.from_numpy(instance[:, None])
  with torch.no_grad():
    features = e(torch.from_numpy(photo.transpose(0, 3, 1, 2)), inst_t)
    want = g(torch.cat([tr.encode_input(torch.from_numpy(label[:, None]), inst_t, LABELS),
                        features], 1)).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got, want, atol=1e-4)

  # Back to a folder: G, D and E, which the official networks load strictly, unchanged.
  out = tmp_path / 'torch'
  assert convert.main([f'--workdir={workdir}', f'--to_pytorch={out}']) == 0
  fresh = {'G': tr.GlobalGenerator(LABELS + 1 + FEAT, 3, 4, 2, 1), 'E': tr.Encoder(3, FEAT, 4, 2),
           'D': tr.MultiscaleDiscriminator(LABELS + 4, 4, 2, 2)}
  for name, net in (('G', g), ('E', e), ('D', d)):
    sd = torch.load(out / f'latest_net_{name}.pth', weights_only=True)
    fresh[name].load_state_dict(sd, strict=True)
    for key, value in net.state_dict().items():
      assert torch.equal(sd[key], value), (name, key)


def test_feature_encoder_model_without_its_encoder_is_refused(official_feat, tmp_path,
                                                              capsys):
  folder, *_ = official_feat
  partial = tmp_path / 'no_e'
  partial.mkdir()
  (partial / 'latest_net_G.pth').write_bytes((folder / 'latest_net_G.pth').read_bytes())
  workdir = tmp_path / 'w'
  config = f'--config={folder / "config.py"}'
  assert convert.main([f'--from_pytorch={partial}', config, f'--workdir={workdir}']) == 2
  err = capsys.readouterr().err.strip()
  assert 'latest_net_E.pth (netE, the instance-wise feature encoder' in err
  assert 'takes 8 channels, 5 of the label map and 3 features' in err
  assert str(partial / 'latest_net_G.pth') in err and '\n' not in err
  # A file that is not netE (G given as E), named.
  g_file = str(folder / 'latest_net_G.pth')
  assert convert.main([f'--from_pytorch={g_file}', f'--from_pytorch_e={g_file}', config,
                       f'--workdir={workdir}']) == 2
  err = capsys.readouterr().err.strip()
  assert f'{g_file}: unexpected key' in err and 'feature encoder (netE)' in err
  assert '\n' not in err
  assert not workdir.exists()
