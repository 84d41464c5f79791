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
Images of the same padded size are translated in batches of --batch_size.

A folder run skips files that cannot be decoded, says which and why, and writes the rest.
It refuses an output that would overwrite an input, and an output folder that is the
input folder.
"""

import argparse
import os
import sys

from p2p_jax import host_memory, image_io, inference

SIZE_POLICY = 'reflect-pad (centred) to a multiple of 2**depth, translate, crop back'


def plan_outputs(input_path: str, output: str) -> list[tuple[str, str]]:
  """(source, destination) pairs for an input file or folder; checks them before any work.

  Raises FileNotFoundError for a missing input or an empty folder, ValueError naming the
  file when a destination would overwrite an input.
  """
  if not os.path.exists(input_path):
    raise FileNotFoundError(f'input {input_path} does not exist')
  if os.path.isdir(input_path):
    sources = image_io.list_images(input_path)
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


def translate_files(translator: inference.Translator, pairs: list[tuple[str, str]], *,
                    seed: int = 0, batch_size: int = 8, log=print) -> dict:
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
        images.append(image_io.read_image(src))
        todo.append((i, src, dst))
      except image_io.ImageError as e:
        skipped.append((src, str(e)))
        log(f'skipped {e}')
    if not images:
      continue
    outputs = translator.translate(images, seed=seed, indices=[i for i, _, _ in todo],
                                   batch_size=batch_size)
    for (i, src, dst), out, image in zip(todo, outputs, images):
      meta = dict(translator.metadata, **{
          'p2p_jax.seed': str(seed), 'p2p_jax.image_index': str(i),
          'p2p_jax.source': os.path.abspath(src), 'p2p_jax.size_policy': SIZE_POLICY,
          'p2p_jax.input_channels': str(image.shape[-1])})
      image_io.write_png(dst, out, meta)
      written.append(dst)
  return {'written': written, 'skipped': skipped}


def _parse_checkpoint(value: str):
  return int(value) if value.isdigit() else value


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m p2p_jax.translate',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='workdir the model was trained into')
  p.add_argument('--input', required=True, help='an image file or a folder of images')
  p.add_argument('--output', required=True,
                 help='a .png file (single input) or a folder (created if needed)')
  p.add_argument('--checkpoint', default='latest', type=_parse_checkpoint,
                 help="'latest', 'best' (lowest validation L1) or a step number")
  p.add_argument('--mode', choices=inference.MODES, default=None,
                 help="'paper' or 'eval' (default: the config's inference_mode)")
  p.add_argument('--bn_scope', choices=inference.BN_SCOPES, default='image')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--batch_size', type=int, default=8)
  return p.parse_args(argv)


def main(argv=None) -> int:
  """CLI entry; exit status 0 when every image was written, 1 when some were skipped,
  2 on an error (bad arguments, missing checkpoint, an undecodable single image)."""
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    pairs = plan_outputs(args.input, args.output)
    if len(pairs) == 1 and not os.path.isdir(args.input):
      image_io.read_image(pairs[0][0])  # A single bad image is an error, before loading.
    translator = inference.load_translator(args.workdir, args.checkpoint, args.mode,
                                           bn_scope=args.bn_scope)
    log = lambda msg: print(msg, file=sys.stderr)
    report = translate_files(translator, pairs, seed=args.seed, batch_size=args.batch_size,
                             log=log)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  where = os.path.dirname(report['written'][0]) if report['written'] else args.output
  print(f'wrote {len(report["written"])} image(s) ({translator.mode} mode, checkpoint step '
        f'{translator.step}) to {where or "."}')
  if report['skipped']:
    print(f'skipped {len(report["skipped"])} file(s):', file=sys.stderr)
    for src, reason in report['skipped']:
      print(f'  {src}: {reason}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  # Faster XLA:CPU (see host_memory.py); re-imports this module once, which costs ~2 s.
  host_memory.reexec_with_hugepage_malloc()
  sys.exit(main())
