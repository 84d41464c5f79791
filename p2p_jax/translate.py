"""Translates your own images with a trained generator.

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
Images of the same padded size are translated in batches of --batch_size. In Python,
`translate_images(generator, images)` does the same for arrays (uint8 in [0, 255] or float
in [-1, 1], one image or a list, sizes may differ) and returns the same kind.

A folder run skips files that cannot be decoded, says which and why, and writes the rest.
It refuses an output that would overwrite an input, and an output folder that is the
input folder.
"""

import os
import sys
from typing import Sequence

from absl import flags
import numpy as np

from p2p_jax import cli, host_memory, image_io, inference

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


def _to_model_space(generator: inference.TrainedGenerator, image):
  """One user image -> (padded model input, crop box, was it uint8). What the model takes
  is the method's (Method.image_to_model_input): a float [-1, 1] image for pix2pix and
  CycleGAN, label ids for pix2pixHD."""
  image, is_uint8 = generator.image_to_model_input(image)
  padded, box = pad_to_multiple(image, generator.multiple)
  return padded, box, is_uint8


def translate_images(generator: inference.TrainedGenerator, images, *, seed: int = 0,
                     indices: Sequence[int] | None = None, batch_size: int = 8):
  """Translates one image or a list of images of any size; outputs keep each input's size.

  images: [H, W], [H, W, 1] or [H, W, 3] arrays, uint8 in [0, 255] or float in [-1, 1]
    (or a list of them, sizes may differ; a stacked [N, H, W, C] array is a list of N).
  indices: each image's number in the run, for its dropout key (default 0, 1, ...).
  Returns the same structure: uint8 outputs for uint8 inputs, float32 [-1, 1] otherwise.
  """
  stacked = hasattr(images, 'shape') and len(images.shape) == 4
  single = hasattr(images, 'shape') and not stacked
  items = [images] if single else list(images)
  indices = list(range(len(items))) if indices is None else list(indices)
  if len(indices) != len(items):
    raise ValueError(f'{len(indices)} indices for {len(items)} images')
  prepared = [_to_model_space(generator, image) for image in items]
  # Same padded size -> same batch; order within a size is kept for the keys.
  outputs = [None] * len(items)
  by_shape = {}
  for j, (padded, _, _) in enumerate(prepared):
    by_shape.setdefault(padded.shape, []).append(j)
  for group in by_shape.values():
    for start in range(0, len(group), batch_size):
      chunk = group[start:start + batch_size]
      out = generator.apply(np.stack([prepared[j][0] for j in chunk]), seed=seed,
                            indices=[indices[j] for j in chunk])
      for j, o in zip(chunk, out):
        (top, left, h, w), is_uint8 = prepared[j][1], prepared[j][2]
        o = o[top:top + h, left:left + w]
        outputs[j] = image_io.to_uint8(o) if is_uint8 else o
  if stacked:
    return np.stack(outputs)
  return outputs[0] if single else outputs


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
                    seed: int = 0, batch_size: int = 8) -> dict:
  """Translates each (source, destination) pair; returns {'written': [...], 'skipped': [...]}.

  Undecodable sources are skipped with their reason ('skipped': [(path, reason)]) and the
  others are still written. Source number i (its position in `pairs`) uses dropout key
  fold_in(PRNGKey(seed), i), so whether another file fails does not change an output.
  """
  written, skipped = [], []
  out_dirs = {os.path.dirname(dst) or '.' for _, dst in pairs}
  for d in out_dirs:
    os.makedirs(d, exist_ok=True)
  # Reading a few batches at a time bounds memory for large folders.
  chunk = max(batch_size * 4, 1)
  for start in range(0, len(pairs), chunk):
    images, todo = [], []
    for i, (src, dst) in enumerate(pairs[start:start + chunk], start):
      try:
        images.append(generator.read_input(src))
        todo.append((i, src, dst))
      except image_io.ImageError as e:
        skipped.append((src, str(e)))
    if not images:
      continue
    outputs = translate_images(generator, images, seed=seed, indices=[i for i, _, _ in todo],
                               batch_size=batch_size)
    for (i, src, dst), out, image in zip(todo, outputs, images):
      meta = dict(generator.metadata, **{
          'p2p_jax.seed': str(seed), 'p2p_jax.image_index': str(i),
          'p2p_jax.source': os.path.abspath(src), 'p2p_jax.size_policy': SIZE_POLICY,
          'p2p_jax.input_channels': str(image.shape[-1])})
      image_io.write_png(dst, out, meta)
      written.append(dst)
  return {'written': written, 'skipped': skipped}


def define_flags(fv) -> None:
  cli.define_generator_flags(fv)
  flags.DEFINE_string('input', None, 'an image file or a folder of images',
                      flag_values=fv, required=True)
  flags.DEFINE_string('output', None, 'a .png file (single input) or a folder (created '
                      'if needed)', flag_values=fv, required=True)
  flags.DEFINE_integer('batch_size', 8, 'images of the same padded size translated together',
                       lower_bound=1, flag_values=fv)


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
    generator = cli.load_generator(args)
    report = translate_files(generator, pairs, seed=args.seed, batch_size=args.batch_size)
    where = os.path.dirname(report['written'][0]) if report['written'] else args.output
    print(f'wrote {len(report["written"])} image(s) ({generator.mode} mode, checkpoint step '
          f'{generator.step}) to {where or "."}')
    if report['skipped']:
      print(f'skipped {len(report["skipped"])} file(s):', file=sys.stderr)
      for _, reason in report['skipped']:
        print(f'  {reason}', file=sys.stderr)  # the reason names the file
      return 1
    return 0
  return cli.run('p2p_jax.translate', run)


if __name__ == '__main__':
  # Faster XLA:CPU (see host_memory.py); re-imports this module once, which costs ~2 s.
  host_memory.reexec_with_hugepage_malloc()
  sys.exit(main())
