"""The reference's PyTorch weights in p2p_jax: same outputs, exact round trip, clear errors."""

import errno
import io
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')

import jax  # pylint: disable=g-import-not-at-top
from p2p_jax import config_schema, networks  # pylint: disable=g-import-not-at-top
from p2p_jax.pytorch import files, weights as pw  # pylint: disable=g-import-not-at-top
import torch_reference as tr  # pylint: disable=g-import-not-at-top

TOL = 1e-4


def numpy_dict(net):
  return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def full_config(arch, **extra):
  """The schema's config with the model fields `arch` and `extra` set."""
  config = config_schema.get_config()
  config.model.update({**arch, **extra})
  return config


def model_config(arch, **extra):
  return full_config(arch, **extra).model


def images(n, size, channels=3, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def run_flax(module, variables, *args, train):
  """module(*args) in eval mode, or in train mode with the updated batch_stats."""
  variables = {k: v for k, v in variables.items() if v}
  if not train:
    fn = jax.jit(lambda v, *a: module.apply(v, *a, train=False))
    return np.asarray(fn(variables, *args)), None
  fn = jax.jit(lambda v, *a: module.apply(v, *a, train=True, mutable=['batch_stats']))
  out, mutated = fn(variables, *args)
  return np.asarray(out), mutated.get('batch_stats', {})


def max_stats_diff(flax_stats, torch_net, entries):
  sd = numpy_dict(torch_net)
  return max([0.0] + [float(np.abs(np.asarray(flax_stats[e.module][e.name]) - sd[e.key]).max())
                      for e in entries if e.collection == 'batch_stats'])


@pytest.mark.parametrize('depth,ngf,size,norm,batch', [
    (8, 8, 256, 'batch', 1),     # unet_256: the paper's structure, narrow
    (6, 4, 64, 'batch', 2),      # unet_64: another depth, batch statistics over 2 images
    (5, 4, 32, 'instance', 2),
])
def test_generator_outputs_match_torch(depth, ngf, size, norm, batch):
  """Eval mode (running statistics) and paper mode without dropout (batch statistics, the
  running statistics updated as PyTorch updates them) agree with the torch module."""
  net = tr.init_weights(tr.UnetGenerator(3, 3, depth, ngf, norm, dropout=None), seed=depth)
  variables, arch = pw.generator_from_torch(numpy_dict(net))
  assert arch == dict(generator=f'unet_{2 ** depth}', ngf=ngf, in_channels=3, out_channels=3,
                      norm=norm, dropout_placement='pytorch')
  g = networks.create_generator(full_config(arch, dropout=False))
  x = images(batch, size)
  net.eval()
  with torch.no_grad():
    want = nhwc(net(nchw(x)))
  got, _ = run_flax(g, variables, x, train=False)
  assert np.abs(got - want).max() < TOL
  net.train()
  with torch.no_grad():
    want = nhwc(net(nchw(x)))
  got, stats = run_flax(g, variables, x, train=True)
  assert np.abs(got - want).max() < TOL
  entries = pw.unet_entries(depth, ngf, 3, 3, 'batch' if norm == 'batch' else 'biased')
  assert max_stats_diff(stats, net, entries) < 1e-5


@pytest.mark.parametrize('n_layers,norm', [(3, 'batch'), (0, 'batch'), (2, 'instance')])
def test_discriminator_outputs_match_torch(n_layers, norm):
  cls = tr.PixelDiscriminator if n_layers == 0 else tr.NLayerDiscriminator
  kwargs = {} if n_layers == 0 else {'n_layers': n_layers}
  net = tr.init_weights(cls(6, 8, norm=norm, **kwargs), seed=n_layers)
  variables, arch = pw.discriminator_from_torch(numpy_dict(net))
  assert arch == dict(ndf=8, d_layers=n_layers, norm=norm)
  d = networks.create_discriminator(full_config(arch))
  x, y = images(2, 64), images(2, 64, seed=1)
  xy = nchw(np.concatenate([x, y], -1))
  for train in (False, True):
    net.train(train)
    with torch.no_grad():
      want = nhwc(net(xy))
    got, stats = run_flax(d, variables, x, y, train=train)
    assert got.shape == want.shape and np.abs(got - want).max() < TOL
  entries = pw.patchgan_entries(n_layers, 8, 6, 'batch' if norm == 'batch' else 'biased')
  assert max_stats_diff(stats, net, entries) < 1e-5


@pytest.mark.parametrize('make', [
    lambda: tr.UnetGenerator(3, 3, 8, 4, 'batch'),
    lambda: tr.UnetGenerator(1, 2, 6, 4, 'instance'),
    lambda: tr.NLayerDiscriminator(6, 4, 3, 'batch'),
    lambda: tr.NLayerDiscriminator(4, 4, 5, 'instance'),
    lambda: tr.PixelDiscriminator(6, 4, 'batch')])
def test_round_trip_is_exact_and_loads_strictly(make):
  net = tr.init_weights(make())
  sd = numpy_dict(net)
  is_g = isinstance(net, tr.UnetGenerator)
  variables, arch = (pw.generator_from_torch if is_g else pw.discriminator_from_torch)(sd)
  export = pw.generator_to_torch if is_g else pw.discriminator_to_torch
  back = export(variables, model_config(arch), num_batches_tracked=7)
  assert list(back) == list(sd)
  for k, v in sd.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
  fresh = make()
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_paper_networks_have_the_reference_key_counts():
  """unet_256 / 70x70 D with batch norm: 82 / 22 tensors (69 / 19 without
  num_batches_tracked), and the parameter counts of DESIGN.md."""
  g, d = tr.UnetGenerator(), tr.NLayerDiscriminator()
  g_keys, d_keys = list(g.state_dict()), list(d.state_dict())
  assert (len(g_keys), len(d_keys)) == (82, 22)
  g_entries = pw.unet_entries(8, 64, 3, 3, 'batch')
  d_entries = pw.patchgan_entries(3, 64, 6, 'batch')
  assert [e.key for e in g_entries] == g_keys and [e.key for e in d_entries] == d_keys
  assert sum(e.kind != 'count' for e in g_entries) == 69
  count = lambda entries: sum(int(np.prod(e.shape)) for e in entries if e.collection == 'params')
  assert count(g_entries) == sum(p.numel() for p in g.parameters()) == 54_413_955
  assert count(d_entries) == sum(p.numel() for p in d.parameters()) == 2_768_705


def test_module_prefix_and_missing_num_batches_tracked_are_accepted():
  sd = numpy_dict(tr.init_weights(tr.UnetGenerator(3, 3, 5, 4)))
  plain, _ = pw.generator_from_torch(sd)
  wrapped = {'module.' + k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}
  other, arch = pw.generator_from_torch(wrapped)
  assert arch['generator'] == 'unet_32'
  assert jax.tree.all(jax.tree.map(np.array_equal, plain, other))


def test_reference_none_norm_imports_with_zero_biases_and_exports_back():
  sd = numpy_dict(tr.init_weights(tr.UnetGenerator(3, 3, 5, 4, 'none')))
  variables, arch = pw.generator_from_torch(sd)
  assert arch['norm'] == 'none' and not np.any(variables['params']['enc2']['bias'])
  back = pw.generator_to_torch(variables, model_config(arch))
  assert list(back) == list(sd)
  variables['params']['enc2']['bias'][0] = 1.0
  with pytest.raises(pw.StateDictError, match='enc2/bias is not zero'):
    pw.generator_to_torch(variables, model_config(arch))


# ---------------------------------------------------------------- bad input


def one_line_error(fn, *args, match, **kwargs):
  with pytest.raises(pw.StateDictError) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert '\n' not in message and match in message, message
  return message


def small_g(norm='batch'):
  return numpy_dict(tr.init_weights(tr.UnetGenerator(3, 3, 5, 4, norm)))


def test_other_architectures_are_refused_naming_the_file_and_first_key():
  resnet = {'model.1.weight': np.zeros((64, 3, 7, 7), np.float32),  # CycleGAN's resnet G
            'model.2.weight': np.ones(64, np.float32),
            'model.10.conv_block.1.weight': np.zeros((256, 256, 3, 3), np.float32)}
  msg = one_line_error(pw.unet_from_torch, resnet, source='latest_net_G.pth',
                       match='latest_net_G.pth: model.1.weight is not a key')
  assert "UnetGenerator: the file holds the reference's ResnetGenerator (CycleGAN's" in msg
  # Either generator: this abridged ResNet is read as one, and its one block named.
  one_line_error(pw.generator_from_torch, resnet, source='latest_net_G.pth',
                 match='a ResnetGenerator with 1 residual blocks is not one of')
  d = numpy_dict(tr.NLayerDiscriminator(6, 4, 3))
  msg = one_line_error(pw.generator_from_torch, d, match='model.0.weight is not a key')
  assert 'NLayerDiscriminator (the PatchGAN discriminator), not a generator' in msg
  one_line_error(pw.discriminator_from_torch, small_g(), source='net_D.pth',
                 match='net_D.pth: model.model.0.weight is not a key')
  deep = numpy_dict(tr.UnetGenerator(3, 3, 9, 1))
  one_line_error(pw.generator_from_torch, deep, match='(unet_512) is not one of')


def test_misfits_name_the_first_key_that_does_not_fit():
  sd = small_g()
  key = 'model.model.1.model.5.weight'
  bad = {**sd, key: np.zeros((3, 3, 4, 4), np.float32)}
  one_line_error(pw.generator_from_torch, bad, source='g.pth',
                 match=f'g.pth: {key} has shape (3, 3, 4, 4), expected (16, 4, 4, 4)')
  one_line_error(pw.generator_from_torch, {**sd, 'model.model.9.weight': sd[key]},
                 match='unexpected key model.model.9.weight')
  missing = {k: v for k, v in sd.items() if k != 'model.model.1.model.2.running_var'}
  one_line_error(pw.generator_from_torch, missing,
                 match='missing key model.model.1.model.2.running_var')
  one_line_error(pw.generator_from_torch, sd, norm='instance',
                 match='unexpected key model.model.1.model.2.weight')
  d = numpy_dict(tr.NLayerDiscriminator(5, 4, 3))  # 5 channels: not x (3) + G(x) (3)
  one_line_error(pw.from_torch, sd, d, d_source='d.pth', match="d.pth: D's first conv takes 5")


def test_both_networks_give_one_model_config():
  d_net = tr.init_weights(tr.NLayerDiscriminator(6, 4, 2, 'instance'))
  g, d, arch = pw.from_torch(small_g('instance'), numpy_dict(d_net))
  assert arch == dict(generator='unet_32', ngf=4, in_channels=3, out_channels=3, norm='instance',
                      dropout_placement='pytorch', ndf=4, d_layers=2)
  config = model_config(arch)
  assert pw.generator_to_torch(g, config) and pw.discriminator_to_torch(d, config)


def test_export_refuses_what_the_reference_cannot_hold():
  variables, arch = pw.generator_from_torch(small_g())
  no_skips = model_config(arch, generator='encoder_decoder_32')
  one_line_error(pw.generator_to_torch, variables, no_skips, match='no counterpart')
  resize_conv = model_config(arch, upsample='resize_conv')
  one_line_error(pw.generator_to_torch, variables, resize_conv, match='model.upsample')
  del variables['batch_stats']['dec1_norm']
  one_line_error(pw.generator_to_torch, variables, model_config(arch),
                 match='batch_stats/dec1_norm/mean is missing')


def test_files_round_trip_and_bad_files_give_one_line_errors(tmp_path, monkeypatch):
  net = tr.init_weights(tr.UnetGenerator(3, 3, 5, 4))
  variables, arch = pw.generator_from_torch(numpy_dict(net))
  path = files.write_pth(tmp_path / 'latest_net_G.pth',
                      pw.generator_to_torch(variables, model_config(arch), 7))
  read = files.read_pth(path)
  assert list(read) == list(net.state_dict())
  tr.UnetGenerator(3, 3, 5, 4).load_state_dict(torch.load(path, weights_only=True), strict=True)
  data = open(path, 'rb').read()
  cut = tmp_path / 'cut.pth'
  cut.write_bytes(data[:len(data) // 2])
  one_line_error(files.read_pth, str(cut), match=f'{cut}: not a readable PyTorch file')
  text = tmp_path / 'notes.pth'
  text.write_text('not a checkpoint\n' * 10)
  one_line_error(files.read_pth, str(text), match=f'{text}: not a readable PyTorch file')
  listed = tmp_path / 'list.pth'
  torch.save([torch.zeros(2)], listed)
  one_line_error(files.read_pth, str(listed), match='holds a list, not a state_dict')
  with pytest.raises(FileNotFoundError, match='nothing.pth'):
    files.read_pth(str(tmp_path / 'nothing.pth'))
  monkeypatch.setitem(__import__('sys').modules, 'torch', None)
  with pytest.raises(ImportError, match='pip install torch --index-url '
                                        'https://download.pytorch.org/whl/cpu'):
    files.read_pth(path)


def test_several_files_are_written_as_one(tmp_path):
  """convert's export: all files renamed into place once all are written, so a failure
  half way (here the second file's folder is missing) leaves the first as it was."""
  first = tmp_path / 'latest_net_G.pth'
  files.write_pth(first, {'w': np.zeros(3, np.float32)})
  before = first.read_bytes()
  with pytest.raises(OSError) as e:
    files.write_pths({first: {'w': np.ones(3, np.float32)},
                      tmp_path / 'gone' / 'latest_net_D.pth': {'w': np.ones(2, np.float32)}})
  assert 'latest_net_D.pth' in str(e.value)
  assert first.read_bytes() == before and os.listdir(tmp_path) == ['latest_net_G.pth']
  files.write_pths({first: {'w': np.ones(3, np.float32)}})
  np.testing.assert_array_equal(files.read_pth(str(first))['w'], np.ones(3))



class _FillsUp(io.FileIO):
  """A file on a disk that is full after its first 1,000 bytes."""

  def write(self, b):
    if self.tell() + len(b) > 1000:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return super().write(b)


def test_a_disk_filling_up_is_one_os_error_naming_the_file(tmp_path, monkeypatch):
  """The disk fills part-way through a file (as it did by hand on a 20 MB tmpfs): torch's
  zip writer then raises a RuntimeError with no reason ('unexpected pos ...') from the
  OSError; write_pths says ENOSPC and names the file, and leaves nothing."""
  monkeypatch.setattr(files, 'open', lambda name, mode: _FillsUp(name, 'w'), raising=False)
  target = tmp_path / 'latest_net_D.pth'
  with pytest.raises(OSError, match='No space left') as e:
    files.write_pths({target: {'w': np.ones((256, 256), np.float32)}})
  assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
  assert os.listdir(tmp_path) == []
