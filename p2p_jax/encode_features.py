r"""Clusters the training set's instance features of a pix2pixHD run with the feature encoder.

  python -m p2p_jax.encode_features --workdir=/tmp/hd_cityscapes \
      [--checkpoint=latest|best|STEP] [--split=train] [--n_clusters=10] [--num_images=-1] \
      [--batch_size=8]

The official encode_features.py (NVIDIA/pix2pixHD): the encoder E of the checkpoint
encodes every photo of the split, in order, without flips or random crops; each instance
of the instance map (also for a label_feat model, as the official script, which sets
instance_feat; the label map where there are no instance maps) gives its feature vector to
its label, and per label the vectors of instances larger than half a block (H * W / 64
pixels) are k-means clustered (p2p_jax/feature_clusters.py). Writes
WORKDIR/features_clustered_010.npz (--n_clusters=10), from which translation draws each
instance's features at test time.
The file is replaced only once the new one is complete: a failed or interrupted run leaves
the previous one as it was.
"""

if __name__ == '__main__':
  # First: SIGTERM or Ctrl-C from here on ends the command at once with one line, the
  # clusters file untouched (or, during its write, right after it; stopping.py).
  from p2p_jax import stopping as _stopping  # pylint: disable=g-import-not-at-top
  _stopping.stop_at_once('p2p_jax.encode_features',
                         'the clusters file is as it was (none written)')
  # Before JAX is imported: the huge-page re-execution (host_memory.py) then does not
  # import everything twice; it holds the stop signals through it.
  from p2p_jax import host_memory as _host_memory  # pylint: disable=g-import-not-at-top
  _host_memory.reexec_with_hugepage_malloc(hold_signals=True)  # faster XLA:CPU

import os
import sys
from typing import Callable, Iterable

from absl import flags
import jax
import numpy as np

from p2p_jax import cli, compile_cache, feature_clusters, networks, stopping, workdirs

PROG = 'p2p_jax.encode_features'


def check_feature_run(config, workdir: str) -> None:
  """ValueError unless `config` (of `workdir`) is pix2pixHD with the feature encoder."""
  if config.method != 'pix2pixhd' or not networks.uses_features(config):
    what = (f'a {config.method} run' if config.method != 'pix2pixhd' else
            'a pix2pixhd run without the feature encoder (pix2pixhd.instance_feat / '
            'label_feat off)')
    raise ValueError(f'{workdir} holds {what}: there are no instance features to cluster '
                     '(encode_features is for pix2pixHD trained with --instance_feat or '
                     '--label_feat)')


def _pad_to(x: np.ndarray, height: int, width: int, value=None) -> np.ndarray:
  """x [B, H, W, ...] padded at the bottom and right: with `value`, or repeating the edge."""
  pad = [(0, 0), (0, height - x.shape[1]), (0, width - x.shape[2])] + [(0, 0)] * (x.ndim - 3)
  if value is None:
    return np.pad(x, pad, mode='edge')
  return np.pad(x, pad, constant_values=value)


def encode(config, variables: dict, batches: Iterable[dict], n_clusters: int = 10, *,
           num_images: int = -1, seed: int = 0,
           progress: Callable[[int], None] | None = None) -> tuple[dict, dict]:
  """(centers {label: float32 [n, feat_num]}, meta) of the features E gives `batches`.

  variables: the generator's checkpointed variables ({'params': {'G', 'E'}, ...}, as
  workdirs.load_generator_variables returns them); only E's are used.
  batches: {'target' [B, H, W, C] photos in [-1, 1], 'label' and/or 'instance' [B, H, W]}
  as the labelled pipeline gives them (input_pipeline.numpy_batches, train=False).
  num_images: stop after this many (-1: all). seed: k-means' seed. progress(images): called
  after each batch. meta: images, feat_num, n_clusters, which ids, and per label the
  instances seen, those clustered (larger than half a block) and the centers made.
  Raises ValueError when the batches give no images or no instance to cluster.
  """
  check_feature_run(config, 'the config')
  params = variables['params']
  if 'E' not in params:
    raise ValueError("the generator's variables have no feature encoder ('E'): not a "
                     'checkpoint of a run with pix2pixhd.instance_feat / label_feat')
  hd = config.pix2pixhd
  encoder = networks.create_feature_encoder(config)
  apply = jax.jit(lambda p, photo, ids: encoder.apply({'params': p}, photo, ids))
  multiple = 2 ** hd.n_downsample_E
  rows, images, full = {}, 0, None
  for batch in batches:
    if 0 <= num_images <= images:
      break
    photo = np.asarray(batch['target'], np.float32)
    # The official encode_features.py encodes with the instance map even for a label_feat
    # model (it sets instance_feat): one vector per instance; the label map where there are
    # no instance maps.
    ids = np.asarray(batch['instance'] if 'instance' in batch else
                     batch['label']).astype(np.int32)
    take = len(photo) if num_images < 0 else min(len(photo), num_images - images)
    photo, ids = photo[:take], ids[:take]
    b, h, w = ids.shape
    # One compiled program for the whole split: a smaller last batch is filled up with its
    # last image, sides that E cannot take are padded to its multiple, with ids (-1) of
    # their own so that no real instance's mean includes padding; all of it cut off again.
    full = max(full or b, b)
    side_h, side_w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    photo = _pad_to(np.concatenate([photo, np.repeat(photo[-1:], full - b, 0)]),
                    side_h, side_w)
    padded_ids = _pad_to(np.concatenate([ids, np.repeat(ids[-1:], full - b, 0)]),
                         side_h, side_w, -1)
    features = np.asarray(apply(params['E'], photo, padded_ids), np.float32)[:b, :h, :w]
    for f, i in zip(features, ids):
      for label, r in feature_clusters.instance_features(f, i).items():
        # The official script keeps the labels 0..label_nc - 1 (range(opt.label_nc)).
        if hd.label_nc and not 0 <= label < hd.label_nc:
          continue
        rows.setdefault(label, []).append(r)
    images += b
    if progress is not None:
      progress(images)
  if not images:
    raise ValueError('the dataset split gave no images: nothing to encode')
  rows = {label: np.concatenate(r) for label, r in rows.items()}
  centers = feature_clusters.cluster(rows, n_clusters, seed=seed)
  if not centers:
    raise ValueError(f'no instance of the {images} images covers more than half a block '
                     f'(H * W / {2 * feature_clusters.BLOCK_NUM} pixels): nothing to cluster')
  counts = {str(label): {'instances': len(r),
                         'clustered': int((r[:, -1] > feature_clusters.MIN_RATIO).sum()),
                         'centers': len(centers.get(label, ()))}
            for label, r in sorted(rows.items())}
  meta = {'images': images, 'feat_num': hd.feat_num, 'n_clusters': n_clusters,
          'ids': 'label' if hd.label_feat else 'instance', 'kmeans_seed': seed,
          'counts': counts}
  return centers, meta


def define_flags(fv) -> None:
  flags.DEFINE_string('workdir', None, 'workdir of a pix2pixHD run trained with the '
                      'feature encoder (pix2pixhd.instance_feat or label_feat)',
                      required=True, flag_values=fv)
  flags.DEFINE_string('checkpoint', 'latest', "whose encoder: 'latest', 'best' (lowest "
                      'validation L1) or a step number', flag_values=fv)
  flags.DEFINE_string('split', 'train', 'dataset split whose photos are encoded (the '
                      'official: the training set)', flag_values=fv)
  flags.DEFINE_integer('n_clusters', 10, 'k-means clusters per label (fewer where a label '
                       'has fewer instances); the file is features_clustered_%03d.npz',
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer('num_images', -1, 'images to encode; -1: the whole split',
                       flag_values=fv)
  flags.DEFINE_integer('batch_size', 8, 'images encoded together', lower_bound=1,
                       flag_values=fv)
  cli.define_compilation_cache_flag(fv)


def parse_args(argv):
  return cli.parse(argv, define_flags, PROG, __doc__)


def run(args) -> dict:
  """Encodes and clusters the split as the flags say and writes the clusters file;
  returns the file's meta, with 'path'."""
  workdir = workdirs.absolute_path(args.workdir)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'workdir {workdir} does not exist')
  config = workdirs.load_config(workdir)
  check_feature_run(config, workdir)   # before any checkpoint is read
  which = cli.checkpoint_choice(args.checkpoint)
  compile_cache.enable(args.compilation_cache)
  step, variables = workdirs.load_generator_variables(workdir, which)
  batches = cli.split_batches(config, args.split, args.batch_size)

  said = [0]

  def progress(images):
    if images // 100 > said[0] // 100:   # a line per 100 images
      print(f'{images} images encoded', flush=True)
    said[0] = images

  try:
    centers, meta = encode(config, variables, batches, args.n_clusters,
                           num_images=args.num_images, progress=progress)
  finally:
    close = getattr(batches, 'close', None)
    if close is not None:
      close()
  meta = {'workdir': workdir, 'checkpoint_step': step, 'split': args.split,
          'dataset': config.data.dataset, **meta}
  path = feature_clusters.clusters_path(workdir, args.n_clusters)
  with stopping.writing(completes=True):  # a stop now ends it once the file is whole
    feature_clusters.save(path, centers, meta)
  return {**meta, 'path': path}


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)

  def report():
    meta = run(args)
    counts = meta['counts'].values()
    print(f'{meta["images"]} images of {meta["split"]}, checkpoint step '
          f'{meta["checkpoint_step"]}: {sum(c["instances"] for c in counts)} '
          f'{meta["ids"]}s, {sum(c["clustered"] for c in counts)} larger than half a block '
          f'clustered into {sum(c["centers"] for c in counts)} centers over '
          f'{sum(1 for c in counts if c["centers"])} labels')
    print(f'clusters: {meta["path"]}')
    return 0
  return cli.run(PROG, report)


if __name__ == '__main__':
  sys.exit(main())
