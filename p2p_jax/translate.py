r"""Translates your own images with a trained generator.

  python -m p2p_jax.translate --workdir=/tmp/p2p_facades --input=photo.jpg --output=out.png
  python -m p2p_jax.translate --workdir=/tmp/p2p_facades --input=my_images/ --output=out/ \
      [--checkpoint=latest|best|STEP] [--mode=paper|eval] [--seed=0] [--batch_size=8]

Inputs: one image, or every image directly inside a folder (not its sub-folders), of any
size, grayscale or colour. Sizes: each image is reflect-padded (centred) to the next
multiple of 2**depth of the generator (256 for unet_256), translated, and cropped back, so
the output has the input's size and its pixels map 1:1 to the input's. Channels: a gray
image into a 3-channel model has its channel repeated; RGB into a 1-channel model becomes
luma. Outputs are PNGs named <input name without extension>.png (<full name>.png when two
inputs share a stem) whose text chunks record the mode, seed, checkpoint and source file.
Images of more than --tile x --tile pixels after padding (default 'auto': 3072 for unet_256,
2048 for smaller U-Nets) are translated in overlapping tiles blended back together, one
tile at a time, and written to their PNG a band of rows at a time (p2p_jax/tiling.py:
in eval mode equal to a whole-image pass up to float rounding; in paper mode each tile
has its own statistics); --tile=off translates them whole. Images of the same padded size
are translated in batches of --batch_size (and of at most a tile's pixels). In Python,
`translate_images(generator, images)` does the same for arrays (uint8 in [0, 255] or float
in [-1, 1], one image or a list, sizes may differ) and returns the same kind.

A folder run skips files that cannot be decoded, says which and why, and writes the rest.
It refuses an output that would overwrite an input, and an output folder that is the
input folder. Two things it does without refusing are counted and said in one warning line
each: transparency is dropped (the colour under transparent pixels is translated as it
is), and an image smaller than half the generator's tile (e.g. 8x4 against 256) is mostly
mirrored padding to the generator.
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command at once with one line (a
  # KeyboardInterrupt raised during the imports can be lost in a garbage-collection
  # callback, and the command go on); each PNG is whole or not there (stopping.py).
  from p2p_jax import stopping as _stopping  # pylint: disable=g-import-not-at-top
  _stopping.stop_at_once('p2p_jax.translate',
                         'the images written before it are whole, the others not written')
  # Before JAX and the rest are imported: an offline first use of --pretrained=NAME fails in
  # a second (pytorch/pretrained.py), and the huge-page re-execution (host_memory.py) does
  # not import everything twice; it holds the stop signals through it.
  import sys  # pylint: disable=g-import-not-at-top
  from p2p_jax.pytorch import pretrained as _pretrained  # pylint: disable=g-import-not-at-top
  _pretrained.exit_if_unreachable(sys.argv[1:], 'p2p_jax.translate')
  from p2p_jax import host_memory as _host_memory  # pylint: disable=g-import-not-at-top
  _host_memory.reexec_with_hugepage_malloc(hold_signals=True)  # faster XLA:CPU

import itertools
import logging
import os
import sys
from typing import Sequence

from absl import flags
import numpy as np

from p2p_jax import cli, image_io, inference, stopping, tiling

SIZE_POLICY = 'reflect-pad (centred) to a multiple of 2**depth, translate, crop back'


# ------------------------------------------------------------------ images of any size

def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple]:
  """Reflect-pads [H, W, C] (centred) to multiples of `multiple`; returns it and the crop box.

  The crop box (top, left, height, width) cuts the original back out of the padded image.
  """
  h, w = image.shape[:2]
  if not h or not w:
    raise ValueError(f'cannot translate an empty image of shape {image.shape}')
  ph, pw = -h % multiple, -w % multiple  # Also pads images smaller than one tile up to it.
  top, left = ph // 2, pw // 2
  pads = ((top, ph - top), (left, pw - left), (0, 0))
  # 'reflect' needs at least 2 pixels along an axis; a 1-pixel line is repeated instead.
  mode = 'reflect' if min(h, w) > 1 else 'edge'
  return np.pad(image, pads, mode=mode), (top, left, h, w)


def _checked(image) -> np.ndarray:
  """One user input as [H, W, C] (alpha of an RGBA image dropped), its dtype kept; the
  channels the method takes are checked by its image_to_model_input."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3:
    raise ValueError(f'translate expects [H, W], [H, W, 1] or [H, W, 3] images, got '
                     f'shape {image.shape}')
  return image[..., :3] if image.shape[-1] == 4 else image  # (translate_images warns)


def _padded_shape(image: np.ndarray, multiple: int) -> tuple[int, int]:
  h, w = image.shape[:2]
  return h + -h % multiple, w + -w % multiple


def _to_model_space(generator: inference.TrainedGenerator, image):
  """One user image -> (padded model input, crop box, was it uint8). What the model takes
  is the method's (Method.image_to_model_input): a float [-1, 1] image for pix2pix and
  CycleGAN, label ids for pix2pixHD."""
  image, is_uint8 = generator.image_to_model_input(image)
  padded, box = pad_to_multiple(image, generator.multiple)
  return padded, box, is_uint8


def translate_images(generator: inference.TrainedGenerator, images, *, seed: int = 0,
                     indices: Sequence[int] | None = None, batch_size: int = 8,
                     tile: str = 'auto', tile_margin: str = 'auto'):
  """Translates one image or a list of images of any size; outputs keep each input's size.

  images: [H, W], [H, W, 1] or [H, W, 3] arrays, uint8 in [0, 255] or float in [-1, 1]
    (or a list of them, sizes may differ; a stacked [N, H, W, C] array is a list of N).
  indices: each image's number in the run, for its dropout key (default 0, 1, ...).
  tile, tile_margin: as translate's flags (p2p_jax/tiling.py): images over the tile's
    pixel count are translated in blended tiles, and batches hold at most that many pixels.
  Returns the same structure: uint8 outputs for uint8 inputs, float32 [-1, 1] otherwise.
  """
  stacked = hasattr(images, 'shape') and len(images.shape) == 4
  single = hasattr(images, 'shape') and not stacked
  items = [images] if single else list(images)
  indices = list(range(len(items))) if indices is None else list(indices)
  if len(indices) != len(items):
    raise ValueError(f'{len(indices)} indices for {len(items)} images')
  with_alpha = sum(np.ndim(image) == 3 and np.shape(image)[-1] == 4 for image in items)
  if with_alpha:
    logging.warning('translate_images: %d of %d image(s) have an alpha channel; it is '
                    'dropped (the colour under transparent pixels is translated as it is)',
                    with_alpha, len(items))
  tiles = tiling.for_generator(generator, tile, tile_margin)
  items = [_checked(image) for image in items]
  # Same padded size -> same batch; order within a size is kept for the keys.
  outputs = [None] * len(items)
  by_shape = {}
  for j, image in enumerate(items):
    shape = _padded_shape(image, generator.multiple)
    plan = tiles.plan(*shape) if tiles else None
    if plan:
      outputs[j] = _tiled_output(generator, image, plan, seed, indices[j])
    else:
      by_shape.setdefault(shape, []).append(j)
  for shape, group in by_shape.items():
    size = tiles.max_batch(*shape, batch_size) if tiles else batch_size
    for start in range(0, len(group), size):
      chunk = group[start:start + size]
      # Converted to float one batch at a time, not all at once.
      prepared = [_to_model_space(generator, items[j]) for j in chunk]
      out = generator.apply(np.stack([p[0] for p in prepared]), seed=seed,
                            indices=[indices[j] for j in chunk])
      for j, o, (_, (top, left, h, w), is_uint8) in zip(chunk, out, prepared):
        o = o[top:top + h, left:left + w]
        outputs[j] = image_io.to_uint8(o) if is_uint8 else o
  if stacked:
    return np.stack(outputs)
  return outputs[0] if single else outputs


def _tiled_output(generator, image, plan, seed, index) -> np.ndarray:
  """The whole output of a tiled image, assembled from its bands."""
  out = None
  for row, band in tiling.generator_bands(generator, image, plan, seed=seed, index=index):
    if out is None:
      out = np.empty(image.shape[:2] + band.shape[-1:],
                     np.uint8 if image.dtype == np.uint8 else np.float32)
    out[row:row + len(band)] = image_io.to_uint8(band) if out.dtype == np.uint8 else band
  return out


def _write_tiled(generator, image, plan, dst, metadata, seed, index) -> None:
  """Translates a tiled image straight into its PNG, a band of rows at a time."""
  bands = tiling.generator_bands(generator, image, plan, seed=seed, index=index)
  row, band = next(bands)
  with image_io.PngWriter(dst, image.shape[0], image.shape[1], band.shape[-1],
                          metadata) as png:
    for row, band in itertools.chain([(row, band)], bands):
      png.write(image_io.to_uint8(band))


# ------------------------------------------------------------------ files


def plan_outputs(input_path: str, output: str) -> list[tuple[str, str]]:
  """(source, destination) pairs for an input file or folder; checks them before any work.

  Raises FileNotFoundError for a missing input or an empty folder, ValueError naming the
  file when a destination would overwrite an input.
  """
  if not os.path.exists(input_path):
    raise FileNotFoundError(f'input {input_path} does not exist')
  if os.path.isdir(input_path):
    sources = [os.path.join(input_path, n) for n in image_io.list_images(input_path)]
    if not sources:
      raise FileNotFoundError(f'no images ({", ".join(image_io.IMAGE_EXTENSIONS)}) directly '
                              f'in {input_path}')
    if os.path.realpath(output) == os.path.realpath(input_path):
      raise ValueError(f'output folder {output} is the input folder; outputs would overwrite '
                       'or mix with the inputs: choose another --output')
    out_dir, single_target = output, None
  else:
    sources = [input_path]
    is_file_target = output.lower().endswith('.png')
    out_dir = os.path.dirname(output) if is_file_target else output
    single_target = output if is_file_target else None

  stems = {}
  for src in sources:
    stem = os.path.splitext(os.path.basename(src))[0]
    stems[stem] = stems.get(stem, 0) + 1
  pairs = []
  for src in sources:
    base = os.path.basename(src)
    stem = os.path.splitext(base)[0]
    name = f'{stem}.png' if stems[stem] == 1 else f'{base}.png'
    pairs.append((src, single_target or os.path.join(out_dir, name)))

  inputs = {os.path.realpath(s) for s in sources}
  for src, dst in pairs:
    if os.path.realpath(dst) in inputs:
      raise ValueError(f'output {dst} would overwrite the input image {src}: choose another '
                       '--output')
  return pairs


def translate_files(generator: inference.TrainedGenerator, pairs: list[tuple[str, str]], *,
                    seed: int = 0, batch_size: int = 8, tile: str = 'auto',
                    tile_margin: str = 'auto', log=None) -> dict:
  """Translates each (source, destination) pair; returns {'written': [...], 'skipped': [...],
  'alpha': [...], 'small': [...]}.

  Undecodable sources are skipped with their reason ('skipped': [(path, reason)]) and the
  others are still written. Source number i (its position in `pairs`) uses dropout key
  fold_in(PRNGKey(seed), i), so whether another file fails does not change an output.
  'alpha' lists the sources whose transparency was dropped, 'small' (path, width, height)
  those smaller than half the generator's tile (`warning_lines` says both in words).
  Images over the tile size (see translate_images) are translated as soon as they are read,
  in tiles, straight into their PNG; `log` (e.g. print) gets one line on how, once.
  """
  method = getattr(generator, 'method', None)
  if method is not None:
    method.check_file_input(generator.config)   # before any folder is made
  tiles = tiling.for_generator(generator, tile, tile_margin)
  out_dirs = {os.path.dirname(dst) or '.' for _, dst in pairs}
  for d in out_dirs:
    stopping.check_folder(d)
  # The folders made here go again if they stay empty (an error, a stop, nothing written).
  made = tuple(dict.fromkeys(f for d in sorted(out_dirs) for f in stopping.missing_folders(d)))
  with stopping.temporary(None, made=made):
    for d in out_dirs:
      os.makedirs(d, exist_ok=True)
    return _translate_into(generator, pairs, tiles, seed, batch_size, tile, tile_margin, log)


def _translate_into(generator, pairs, tiles, seed, batch_size, tile, tile_margin, log) -> dict:
  """translate_files' loop, once the output folders exist."""
  written, skipped, alpha, small, noted = [], [], [], [], False

  def metadata(i, src, image, **extra):
    return dict(generator.metadata, **{
        'p2p_jax.seed': str(seed), 'p2p_jax.image_index': str(i),
        'p2p_jax.source': os.path.abspath(src), 'p2p_jax.size_policy': SIZE_POLICY,
        'p2p_jax.input_channels': str(image.shape[-1])}, **extra)

  # Reading a few batches at a time bounds memory for large folders.
  chunk = max(batch_size * 4, 1)
  for start in range(0, len(pairs), chunk):
    images, todo = [], []
    for i, (src, dst) in enumerate(pairs[start:start + chunk], start):
      info = {}
      try:
        image = generator.read_input(src, info)
      except image_io.ImageError as e:
        skipped.append((src, str(e)))
        continue
      if info['alpha']:
        alpha.append(src)
      h, w = image.shape[:2]
      if 2 * min(h, w) < generator.multiple:
        small.append((src, w, h))
      plan = tiles.plan(*_padded_shape(image, generator.multiple)) if tiles else None
      if plan:
        if log and not noted:
          log(f'tiles: {tiles.describe()}')
          noted = True
        meta = metadata(i, src, image, **{'p2p_jax.tiles': f'{plan.count} tiles: '
                                          f'{tiles.describe()}'})
        _write_tiled(generator, image, plan, dst, meta, seed, i)
        written.append(dst)
        continue
      images.append(image)
      todo.append((i, src, dst))
    if not images:
      continue
    outputs = translate_images(generator, images, seed=seed, indices=[i for i, _, _ in todo],
                               batch_size=batch_size, tile=tile, tile_margin=tile_margin)
    for (i, src, dst), out, image in zip(todo, outputs, images):
      image_io.write_png(dst, out, metadata(i, src, image))
      written.append(dst)
  return {'written': written, 'skipped': skipped, 'alpha': alpha, 'small': small}


def warning_lines(report: dict, tile: int) -> list[str]:
  """One line for the images whose transparency was dropped, one for those that are mostly
  padding (translate_files' report; `tile`: the generator's multiple), counted."""
  total = len(report['written']) + len(report['skipped'])
  lines = []
  if report['alpha']:
    lines.append(f'{len(report["alpha"])} of {total} image(s) had transparency, dropped: the '
                 'colour under transparent pixels was translated as it is (e.g. '
                 f'{report["alpha"][0]}); flatten them onto a background first if it matters')
  if report['small']:
    path, w, h = min(report['small'], key=lambda x: min(x[1], x[2]))
    lines.append(f'{len(report["small"])} of {total} image(s) are smaller than half the '
                 f"generator's {tile} px tile (the smallest: {path}, {w}x{h}): reflect-padded "
                 f'to {tile} px, what the generator sees is mostly mirrored padding; enlarge '
                 'them first for a better result')
  return lines


def define_flags(fv) -> None:
  cli.define_generator_flags(fv)
  flags.DEFINE_string('input', None, 'an image file or a folder of images',
                      flag_values=fv, required=True)
  flags.DEFINE_string('output', None, 'a .png file (single input) or a folder (created '
                      'if needed)', flag_values=fv, required=True)
  flags.DEFINE_integer('batch_size', 8, 'images of the same padded size translated together',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_string('tile', 'auto', 'images of more than NxN pixels (after padding) are '
                      'translated in NxN tiles, blended (p2p_jax/tiling.py): '
                      f"'auto' (N = {tiling.AUTO_TILE}, or {tiling.AUTO_TILE_MARGINS} x the "
                      "generator's receptive reach if larger: 3072 for unet_256), 'off' "
                      '(whole images: memory grows with the image), or N (a multiple of '
                      '2**depth)', flag_values=fv)
  flags.DEFINE_string('tile_margin', 'auto', "px of each tile's inner borders computed for "
                      "context and not used: 'auto' (the generator's receptive reach, so "
                      'that in eval mode tiles equal a whole-image pass), or a number',
                      flag_values=fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, 'p2p_jax.translate', __doc__)


def main(argv=None) -> int:
  """CLI entry; exit status 0 when every image was written, 1 when some were skipped,
  2 on an error (bad flags, missing checkpoint, an undecodable single image)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def run():
    pairs = plan_outputs(args.input, args.output)
    if len(pairs) == 1 and not os.path.isdir(args.input):
      image_io.read_image(pairs[0][0])  # A single bad image is an error, before loading.
    generator = cli.load_generator(args, for_files=True)
    report = translate_files(generator, pairs, seed=args.seed, batch_size=args.batch_size,
                             tile=args.tile, tile_margin=args.tile_margin, log=print)
    for line in warning_lines(report, generator.multiple):
      print(f'p2p_jax.translate: warning: {line}', file=sys.stderr)
    how = f'{generator.mode} mode, checkpoint step {generator.step}'
    if not os.path.isdir(args.input) and report['written']:
      print(f'wrote {report["written"][0]} ({how})')  # the file, not its folder
    else:
      where = os.path.dirname(report['written'][0]) if report['written'] else args.output
      print(f'wrote {len(report["written"])} image(s) ({how}) to {where or "."}')
    if report['skipped']:
      print(f'skipped {len(report["skipped"])} file(s):', file=sys.stderr)
      for _, reason in report['skipped']:
        print(f'  {reason}', file=sys.stderr)  # the reason names the file
      return 1
    return 0
  return cli.run('p2p_jax.translate', run)


if __name__ == '__main__':
  sys.exit(main())
