"""Large images in tiles: the receptive reach, the layout, blending without seams, and
equality with a whole-image pass in eval mode (tiny U-Nets, images of a few hundred px)."""

import functools
import os
import types

import jax
import numpy as np
import pytest

import data_fixtures as fx
from conftest import tiny_config
from p2p_jax import image_io, inference, networks, tiling, translate
from test_inference import fake_variables, make_workdir


@functools.lru_cache(maxsize=None)
def unet32(mode):
  config = tiny_config('unet_32', width=2)
  return inference.TrainedGenerator(config, fake_variables(config, 32), mode,
                                    devices=jax.devices()[:1])


def _smooth_image(h, w, seed=0):
  """A smooth uint8 image: gradients plus a few broad bumps."""
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  rng = np.random.default_rng(seed)
  chans = [np.sin(a * x + b * y + c) for a, b, c in rng.uniform(1, 6, (3, 3))]
  return np.clip(127.5 + 100 * np.stack(chans, -1), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ receptive reach

def test_receptive_reach_is_the_unets_measured_dependence():
  assert [tiling.receptive_reach(tiling.unet_layers(d)) for d in (5, 6, 7, 8)] == [
      93, 189, 381, 765]
  # Measured: which input rows each output row of unet_32 depends on (eval mode).
  config = tiny_config('unet_32', width=2)
  g = networks.create_generator(config)
  variables = inference.apply_variables(fake_variables(config, 32))
  x = np.random.default_rng(0).uniform(-1, 1, (1, 320, 32, 3)).astype(np.float32)
  rows = lambda x: g.apply(variables, x, train=False)[0, 128:192].sum(axis=(1, 2))
  jac = np.abs(np.asarray(jax.jacrev(rows)(x)))[:, 0].sum(axis=(2, 3))   # [out, in]
  reach = max(max(o + 128 - np.flatnonzero(r).min(), np.flatnonzero(r).max() - o - 128)
              for o, r in enumerate(jac))
  assert reach == tiling.receptive_reach(tiling.unet_layers(5))
  with pytest.raises(ValueError, match='resolution'):
    tiling.receptive_reach([('conv', 4, 2, 1)])


# ------------------------------------------------------------------ layout and weights

@pytest.mark.parametrize('length,tile,margin,multiple,blend', [
    (200 * 32, 640, 93, 32, 40), (9216, 3072, 765, 256, 192), (96, 64, 14, 32, 4),
    (448, 320, 93, 32, 20), (64, 64, 10, 32, 4), (10 * 32, 128, 0, 32, 1)])
def test_layout_covers_the_canvas_with_few_aligned_tiles(length, tile, margin, multiple,
                                                          blend):
  layout = tiling.axis_layout(length, tile, margin, multiple, blend)
  starts = np.asarray(layout.starts)
  assert starts[0] == 0 and starts[-1] + layout.tile == length
  assert all(s % multiple == 0 for s in starts)
  gaps = np.diff(starts)
  assert (gaps > 0).all() and (gaps <= tile - 2 * margin - blend).all()
  if len(starts) > 2:  # one tile fewer could not cover it with that overlap
    max_step = (tile - 2 * margin - blend) // multiple * multiple
    assert (len(starts) - 2) * max_step < length - tile
  weights = layout.weights()
  total = np.zeros(length)
  for k, (s, w) in enumerate(zip(starts, weights)):
    total[s:s + layout.tile] += w
    # Zero within the margin of inner borders: only pixels the tile sees whole are used.
    if k > 0:
      assert not w[:margin].any()
    if k < len(starts) - 1:
      assert not w[layout.tile - margin:].any()
    if len(starts) > 1:  # smooth: steps no bigger than a smoothstep across the blend
      assert np.abs(np.diff(w)).max() <= 1.5 / blend + 1e-6
  np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_a_tile_too_small_for_its_margin_says_what_fits():
  with pytest.raises(ValueError, match='at least 160 px or a margin of at most 46 px'):
    tiling.axis_layout(1024, 128, 60, 32, 4)


def test_windows_equal_the_padded_canvas():
  rng = np.random.default_rng(0)
  for h, w, m in [(45, 37, 32), (3, 40, 32), (1, 70, 32), (217, 300, 64), (64, 64, 32)]:
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    canvas, (top, left, _, _) = translate.pad_to_multiple(image, m)
    for box in [(0, 0, *canvas.shape[:2]), (0, m, m, min(m, canvas.shape[1] - m)),
                (canvas.shape[0] - m, 0, m, canvas.shape[1])]:
      y, x, bh, bw = box
      np.testing.assert_array_equal(tiling.read_window(image, (top, left), box),
                                    canvas[y:y + bh, x:x + bw])


def test_stitching_is_a_partition_of_unity_delivered_in_bands():
  canvas = np.random.default_rng(0).uniform(-1, 1, (352, 288, 3)).astype(np.float32)
  plan = tiling.make_plan(352, 288, 128, 20, 32)
  assert plan.count > 4
  consumed = []

  def outputs():  # the identity "generator": each tile's output is its input
    for k, (y, x, h, w) in enumerate(plan.boxes()):
      consumed.append(k)
      yield canvas[y:y + h, x:x + w]

  crop = (5, 7, 340, 270)
  got = np.zeros((340, 270, 3), np.float32)
  rows_done = 0
  for row, band in tiling.stitch(plan, outputs(), crop):
    assert row == rows_done  # contiguous, in order
    if rows_done == 0:  # the first rows come out long before the last tile is read
      assert len(consumed) <= 2 * len(plan.cols.starts)
    got[row:row + len(band)] = band
    rows_done += len(band)
  assert rows_done == 340 and len(consumed) == plan.count
  np.testing.assert_allclose(got, canvas[5:345, 7:277], atol=1e-6)


def test_blending_leaves_no_seams_where_tiles_disagree():
  """Tiles whose outputs are flat but different (as per-tile statistics make them): the
  blend turns each disagreement into a ramp across the overlap, never a step."""
  plan = tiling.make_plan(256, 256, 96, 10, 32)
  levels = np.random.default_rng(1).uniform(-1, 1, plan.count)
  outputs = [np.full((h, w, 1), levels[k], np.float32)
             for k, (_, _, h, w) in enumerate(plan.boxes())]
  out = np.concatenate([b for _, b in tiling.stitch(plan, outputs, (0, 0, 256, 256))])
  step = max(np.abs(np.diff(out, axis=a)).max() for a in (0, 1))
  spread = levels.max() - levels.min()
  narrowest = min(96 - 2 * 10 - g for g in np.diff(plan.rows.starts))   # blend zone
  assert step <= 1.5 * spread / narrowest + 1e-5      # a hard cut would step by `spread`
  assert step < 0.25 * spread


# ------------------------------------------------------------------ with a generator

def test_eval_mode_tiles_equal_the_whole_image_with_margins_of_the_reach():
  generator = unet32('eval')
  image = fx.texture(0, 480)[:470, :390]
  whole = translate.translate_images(generator, image.astype(np.float32) / 127.5 - 1,
                                     tile='off')
  tiles = tiling.for_generator(generator, '320')
  assert tiles.margin == tiles.reach == 93 and tiles.local
  plan = tiles.plan(480, 416)
  assert plan.count == 6
  tiled = translate.translate_images(generator, image.astype(np.float32) / 127.5 - 1,
                                     tile='320')
  np.testing.assert_allclose(tiled, whole, atol=1e-5)
  assert 'equal to a whole-image pass up to float rounding' in tiles.describe()
  # Margins short of the reach: the tiles' borders reach into the output.
  short = translate.translate_images(generator, image.astype(np.float32) / 127.5 - 1,
                                     tile='320', tile_margin='40')
  assert np.abs(short - whole).max() > 1e-4
  assert 'may differ' in tiling.for_generator(generator, '320', '40').describe()


def test_paper_mode_tiles_are_seamless_and_say_they_differ(monkeypatch):
  """Per-tile statistics make neighbouring tiles disagree. Across every seam the blended
  output steps no more than the tiles do themselves plus a ramp of their disagreement
  (the weights' slope, 1.5 / blend width, times the spread of the tiles it blends); a hard
  cut from tile to tile breaks that bound."""
  generator = unet32('paper')
  tiles = tiling.for_generator(generator, '64')
  assert not tiles.local and 'BatchNorm statistics per tile' in tiles.describe()
  image = _smooth_image(150, 200)
  plan = tiles.plan(160, 224)
  seen, apply = [], generator.apply
  monkeypatch.setattr(generator, 'apply', lambda x, **kw: seen.append(apply(x, **kw)) or
                      seen[-1])
  out = np.concatenate([b for _, b in tiling.generator_bands(generator, image, plan)])
  # Each tile's output and weight on the image (output NaN where the tile is not).
  top, left = 5, 12
  placed = np.full((plan.count, 150, 200, 3), np.nan, np.float32)
  weight = np.zeros((plan.count, 150, 200, 1), np.float32)
  wy, wx = plan.rows.weights(), plan.cols.weights()
  for k, (y, x, h, w) in enumerate(plan.boxes()):
    r, c = plan.rows.starts.index(y), plan.cols.starts.index(x)
    tile_w = wy[r][:, None, None] * wx[c][None, :, None]
    y0, x0 = max(y, top), max(x, left)
    y1, x1 = min(y + h, top + 150), min(x + w, left + 200)
    placed[k, y0 - top:y1 - top, x0 - left:x1 - left] = seen[k][0, y0 - y:y1 - y,
                                                                  x0 - x:x1 - x]
    weight[k, y0 - top:y1 - top, x0 - left:x1 - left] = tile_w[y0 - y:y1 - y, x0 - x:x1 - x]
  np.testing.assert_allclose(out, np.nansum(placed * weight, 0), atol=1e-5)
  hard = np.take_along_axis(placed, weight.argmax(0)[None], 0)[0]   # no blending
  slope = 1.5 / (tiles.tile // 16)
  violations = {}
  for axis in (1, 2):
    used = (weight > 0) | (np.roll(weight, -1, axis) > 0)     # blended at p or p + 1
    cut = lambda a: a[:, :-1] if axis == 1 else a[:, :, :-1]
    used = cut(used)
    vals = np.where(used, cut(placed), np.nan)
    spread = np.nanmax(vals, 0) - np.nanmin(vals, 0)
    own = np.nanmax(np.where(used, np.abs(np.diff(placed, axis=axis)), np.nan), 0)
    bound = own + slope * spread + 1e-5
    assert spread.max() > 0.1                   # the tiles do disagree
    assert (np.abs(np.diff(out, axis=axis - 1)) <= bound).all()
    violations[axis] = (np.abs(np.diff(hard, axis=axis - 1)) > bound).sum()
  assert sum(violations.values()) > 0, violations


def test_generators_of_unknown_reach_run_whole_unless_told_to_tile():
  other = types.SimpleNamespace(generator=object(), mode='eval', multiple=4)
  assert tiling.for_generator(other, 'auto') is None
  with pytest.raises(ValueError, match='U-Nets only, not of object: use --tile=off'):
    tiling.for_generator(other, '64')


def test_large_batches_are_split_to_the_tile_budget(monkeypatch):
  generator = unet32('eval')
  sizes = []
  apply = generator.apply
  monkeypatch.setattr(generator, 'apply', lambda x, **kw: sizes.append(len(x)) or apply(
      x, **kw))
  images = [fx.texture(i, 64) for i in range(5)]
  translate.translate_images(generator, images, batch_size=8, tile='128')
  assert sizes == [4, 1]   # 4 images of 64x64 px hold 128x128 px
  sizes.clear()
  translate.translate_images(generator, images, batch_size=8, tile='off')
  assert sizes == [5]


# ------------------------------------------------------------------ files and flags

@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path, _ = make_workdir(tmp_path_factory.mktemp('w') / 'run', tiny_config('unet_32', 2), 32)
  return path


def test_cli_streams_a_tiled_image_into_its_png(workdir, tmp_path, capsys):
  src = fx.save(str(tmp_path / 'big.png'), fx.texture(2, 400)[:400, :350])
  dst = str(tmp_path / 'out' / 'big.png')
  assert translate.main(['--workdir', workdir, '--input', src, '--output', dst,
                         '--mode', 'eval', '--tile', '320']) == 0
  out = capsys.readouterr().out
  assert out.count('tiles: 320x320 px with 93 px margins') == 1, out
  assert 'eval mode, BatchNorm running averages: equal to a whole-image pass' in out
  generator = translate.cli.load_generator(translate.parse_args(
      ['--workdir', workdir, '--input', src, '--output', dst, '--mode', 'eval']))
  whole = translate.translate_images(generator, image_io.read_image(src), tile='off')
  got = image_io.read_image(dst)
  assert got.shape == whole.shape and np.abs(got.astype(int) - whole).max() <= 1
  meta = image_io.read_png_metadata(dst)
  assert meta['p2p_jax.tiles'].startswith('4 tiles: 320x320 px')
  assert meta['p2p_jax.mode'] == 'eval' and meta['p2p_jax.source'] == src
  assert not os.path.exists(dst + '.tmp')


@pytest.mark.parametrize('flag,expected', [
    ('--tile=100', "--tile must be 'auto', 'off' or a side in px that is a multiple of 32"),
    ('--tile=big', "--tile must be 'auto', 'off'"),
    ('--tile=32', '--tile=32 is too small for unet_32: use at least 64 px'),
    ('--tile_margin=-3', "--tile_margin must be 'auto' or px from 0 to"),
    ('--tile_margin=1000', "--tile_margin must be 'auto' or px from 0 to 944 (for 2048 px")])
def test_a_bad_tile_flag_is_one_line(workdir, tmp_path, capsys, flag, expected):
  src = fx.save(str(tmp_path / 'x.png'), fx.texture(3, 40))
  assert translate.main(['--workdir', workdir, '--input', src, '--output',
                         str(tmp_path / 'o.png'), flag]) == 2
  err = capsys.readouterr().err
  assert expected in err and len(err.strip().splitlines()) == 1, err
  assert not os.path.exists(tmp_path / 'o.png')


def test_png_writer_writes_what_pillow_reads(tmp_path):
  image = fx.texture(4, 96)[:70]
  path = str(tmp_path / 'a.png')
  with image_io.PngWriter(path, 70, 96, 3, {'k': 'v', 'src': 'café 日本'}) as png:
    png.write(image[:33])
    png.write(image[33:])
  np.testing.assert_array_equal(image_io.read_image(path), image)
  assert image_io.read_png_metadata(path) == {'k': 'v', 'src': 'café 日本'}
  gray = fx.texture(5, 64, 1)
  with image_io.PngWriter(path, 64, 64, 1) as png:
    png.write(gray)
  np.testing.assert_array_equal(image_io.read_image(path), gray)
  # A failure part-way leaves neither a file nor its temporary.
  with pytest.raises(ValueError, match='do not continue'):
    with image_io.PngWriter(str(tmp_path / 'b.png'), 64, 64, 3) as png:
      png.write(image[:10, :64])
      png.write(image[:10, :50])
  assert sorted(os.listdir(tmp_path)) == ['a.png']


def test_a_full_disk_names_the_png_and_leaves_no_temporary(tmp_path):
  """A write that fails for space names the PNG (the one line a command prints then), and
  the band writer's unfinished file goes even though its last flush fails too."""
  rng = np.random.default_rng(0)
  noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)   # does not compress
  path = str(tmp_path / 'whole.png')
  os.symlink('/dev/full', path + '.tmp')                          # every write: ENOSPC
  with pytest.raises(OSError, match='No space left') as e:
    image_io.write_png(path, noise)
  assert e.value.filename == path
  assert not os.path.lexists(path + '.tmp') and not os.path.exists(path)
  path = str(tmp_path / 'bands.png')
  os.symlink('/dev/full', path + '.tmp')
  with pytest.raises(OSError, match='No space left') as e:
    with image_io.PngWriter(path, 256, 256, 3) as png:
      png.write(noise)
  assert e.value.filename == path
  assert not os.path.lexists(path + '.tmp') and not os.path.exists(path)


@pytest.mark.parametrize('mode', ['RGB', 'RGBA', 'P', 'CMYK', 'L', 'LA', '1'])
def test_decoding_in_bands_is_decoding_whole(tmp_path, monkeypatch, mode):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  im = Image.fromarray(fx.texture(6, 64)[:50, :61]).convert(mode)
  path = str(tmp_path / ('a.tiff' if mode == 'CMYK' else 'a.png'))
  im.save(path)
  whole = image_io.read_image(path)
  monkeypatch.setattr(image_io, 'BAND_PIXELS', 61 * 7)   # 7 rows per band
  np.testing.assert_array_equal(image_io.read_image(path), whole)
  with Image.open(path) as im:
    gray = im.mode in image_io.GRAY_MODES
    expected = np.asarray(im.convert('L' if gray else 'RGB'))
  np.testing.assert_array_equal(whole, expected[..., None] if gray else expected)
