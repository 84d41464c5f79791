"""pix2pixHD's feature clusters: the test-time source of the instance-wise features.

A model trained with the feature encoder E (pix2pixhd.instance_feat / label_feat) needs
one feature vector per instance of each label map. The official code (NVIDIA/pix2pixHD
encode_features.py, Pix2PixHDModel.encode_features and sample_features) gets them so:

  1. E encodes every training photo; each instance gives one row: its feature vector and
     its size (pixels / (H * W // 32)); the row goes to its label (id i < 1000: label i,
     else i // 1000, Cityscapes' instance ids).
  2. Per label, the rows of instances larger than half a block (ratio > 0.5) are
     clustered by k-means into min(rows, n_clusters) centers.
  3. At test time each instance gets a center of its label, drawn at random
     (`sample_feature_map`): another draw, another photo of the same label map.

The clusters file is WORKDIR/features_clustered_010.npz (the official name
features_clustered_%03d, as an .npz of plain arrays that loads without pickle):
  version         'p2p_jax.feature_clusters/1'
  feat_num        int, the length of every center
  labels          int64 [L], the labels that have centers
  centers_<label> float32 [n, feat_num] for each of them
  meta            a JSON string: how the file was made (checkpoint step, split, counts)
`python -m p2p_jax.encode_features` writes it (p2p_jax/encode_features.py).
"""

import glob
import json
import os
import zipfile

import numpy as np

VERSION = 'p2p_jax.feature_clusters/1'
# An instance's size is counted in blocks of H * W // 32 pixels (the official block_num).
BLOCK_NUM = 32
# Only instances larger than half a block are clustered (the official `feat[:, -1] > 0.5`).
MIN_RATIO = 0.5


def clusters_path(workdir: str, n_clusters: int = 10) -> str:
  """WORKDIR/features_clustered_%03d.npz (the official features_clustered_%03d.npy)."""
  return os.path.join(workdir, f'features_clustered_{n_clusters:03d}.npz')


def label_of(instance_id: int) -> int:
  """The label of an instance id, as Cityscapes writes them (26001: class 26, instance
  1; ids below 1000 are classes without instances) and the official code reads them."""
  return instance_id if instance_id < 1000 else instance_id // 1000


def instance_features(features, ids) -> dict[int, np.ndarray]:
  """One image's rows, as the official encode_features: {label: float64 [n, feat_num + 1]},
  one row per id of `ids` (ascending, as np.unique), of its label.

  features: [H, W, feat_num], E's output (constant over each instance); ids: [H, W].
  A row is the features at the middle pixel of the instance (the official idx[num // 2],
  pixels in row-major order), then num / (H * W // 32) (its size in blocks; images
  under 32 pixels count blocks of one pixel, where the official code divides by zero).
  """
  features, ids = np.asarray(features), np.asarray(ids)
  if ids.ndim != 2 or features.ndim != 3 or features.shape[:2] != ids.shape:
    raise ValueError(f'instance_features takes features [H, W, C] and ids [H, W] of one '
                     f'image, got {features.shape} and {ids.shape}')
  # One stable sort: the pixels id after id, each id's in row-major order; the middle one.
  flat = ids.reshape(-1).astype(np.int64)
  order = np.argsort(flat, kind='stable')
  by_id = flat[order]
  starts = np.flatnonzero(np.r_[True, by_id[1:] != by_id[:-1]])
  counts, uniq = np.diff(np.r_[starts, flat.size]), by_id[starts]
  vectors = features.reshape(flat.size, -1)[order[starts + counts // 2]].astype(np.float64)
  ratio = counts / max(flat.size // BLOCK_NUM, 1)   # H * W // 32 pixels a block
  rows = np.concatenate([vectors, ratio[:, None]], 1)
  labels = np.array([label_of(int(i)) for i in uniq], np.int64)
  return {int(label): rows[labels == label] for label in np.unique(labels)}


def _squared_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
  return np.maximum((x * x).sum(1)[:, None] - 2.0 * x @ centers.T
                    + (centers * centers).sum(1)[None], 0.0)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """Greedy k-means++ (as sklearn's): each next center the best of 2 + log(k) candidates
  drawn with probability proportional to the squared distance to the nearest center."""
  n, trials = len(x), 2 + int(np.log(k))
  centers = [x[rng.integers(n)]]
  closest = _squared_distances(x, centers[0][None])[:, 0]
  for _ in range(1, k):
    potential = closest.sum()
    if potential <= 0:   # every point sits on a center (duplicates): any point will do
      candidates = rng.integers(n, size=trials)
    else:
      candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * potential)
      candidates = np.minimum(candidates, n - 1)
    options = np.minimum(closest[None], _squared_distances(x, x[candidates]).T)
    best = int(np.argmin(options.sum(1)))
    centers.append(x[candidates[best]])
    closest = options[best]
  return np.stack(centers)


def _lloyd(x: np.ndarray, centers: np.ndarray, max_iter: int,
           tol: float) -> tuple[np.ndarray, float]:
  """Lloyd's iterations until the centers move less than `tol` (squared, summed)."""
  k = len(centers)
  for _ in range(max_iter):
    d = _squared_distances(x, centers)
    assign = np.argmin(d, 1)
    counts = np.bincount(assign, minlength=k)
    sums = np.zeros_like(centers)
    np.add.at(sums, assign, x)
    new = centers.copy()
    full = counts > 0
    new[full] = sums[full] / counts[full, None]
    if not full.all():
      # An empty cluster takes the points farthest from their centers (as sklearn does),
      # so k centers stay k distinct ones wherever the data allow.
      far = np.argsort(-d[np.arange(len(x)), assign], kind='stable')[:int((~full).sum())]
      new[~full] = x[far]
    shift, centers = float(((new - centers) ** 2).sum()), new
    if shift <= tol:
      break
  return centers, float(_squared_distances(x, centers).min(1).sum())   # the inertia


def kmeans(points, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 300,
           tol: float = 1e-4) -> np.ndarray:
  """k-means centers [k, d] (float64) of points [n, d], k <= n.

  The objective and procedure of sklearn's KMeans (which the official encode_features.py
  runs with random_state=0): greedy k-means++ initialisation, Lloyd iterations until the
  centers move less than tol x the mean per-dimension variance, the best of n_init runs
  by inertia (sum of squared distances to the nearest center). The random draws are
  numpy's, from np.random.default_rng(seed), not sklearn's: the same data give centers of
  the same quality, not necessarily sklearn's centers. A seed gives the same centers.
  """
  x = np.asarray(points, np.float64)
  if x.ndim != 2 or not 1 <= k <= len(x):
    raise ValueError(f'kmeans takes points [n, d] and 1 <= k <= n, got {x.shape} and k={k}')
  rng = np.random.default_rng(seed)
  tol = tol * float(np.mean(np.var(x, axis=0)))
  best, best_inertia = None, np.inf
  for _ in range(max(n_init, 1)):
    centers, inertia = _lloyd(x, _kmeans_plus_plus(x, k, rng), max_iter, tol)
    if best is None or inertia < best_inertia:
      best, best_inertia = centers, inertia
  return best


def cluster(features_by_label: dict, n_clusters: int = 10, seed: int = 0) -> dict:
  """{label: float32 centers [n, feat_num]} from {label: rows [m, feat_num + 1]}
  (`instance_features`' rows of many images), as the official encode_features.py: the
  rows whose size column is > 0.5, without it, in n = min(rows, n_clusters) clusters;
  labels left with no row have no centers."""
  centers = {}
  for label in sorted(features_by_label):
    rows = np.asarray(features_by_label[label], np.float64)
    if rows.ndim != 2 or rows.shape[1] < 2:
      raise ValueError(f'label {label}: rows [n, feat_num + 1] expected, got {rows.shape}')
    kept = rows[rows[:, -1] > MIN_RATIO, :-1]
    if len(kept):
      centers[int(label)] = kmeans(kept, min(len(kept), n_clusters),
                                   seed=seed).astype(np.float32)
  return centers


def save(path: str, centers: dict, meta: dict) -> None:
  """Writes the clusters file atomically: into a temporary file of the same folder, then
  renamed over `path`, so that a failure (full disk, Ctrl-C) leaves no half file and
  whatever file was there before. meta: JSON-able (its 'feat_num' is used when `centers`
  is empty)."""
  shapes = {int(k): np.shape(c) for k, c in centers.items()}
  if len({s[-1:] for s in shapes.values()}) > 1 or any(
      len(s) != 2 or not s[0] for s in shapes.values()):
    raise ValueError(f'{path}: centers [n >= 1, feat_num] of one feat_num expected, got '
                     f'{shapes}')
  feat_num = next(iter(shapes.values()))[1] if shapes else int(meta.get('feat_num', -1))
  labels = sorted(int(k) for k in centers)
  arrays = {'version': np.array(VERSION), 'feat_num': np.array(feat_num, np.int64),
            'labels': np.array(labels, np.int64),
            'meta': np.array(json.dumps(meta, sort_keys=True))}   # before any file exists
  arrays.update({f'centers_{k}': np.asarray(centers[k], np.float32) for k in labels})
  folder, name = os.path.split(os.path.abspath(path))
  tmp = os.path.join(folder, f'.{name}.{os.getpid()}.tmp')
  try:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, PermissionError)):
      # A full disk, a quota, an I/O error: one line (cli.run) rather than a traceback.
      before = 'the previous one is as it was' if os.path.exists(path) else 'none was there'
      raise ValueError(f'{path}: the clusters file could not be written '
                       f'({e.strerror or e}); {before}') from e
    raise


def load(path: str, feat_num: int | None = None) -> tuple[dict, dict]:
  """(centers {label: float32 [n, feat_num]}, meta) of a clusters file; raises
  FileNotFoundError (one line: how to make it) when there is none, ValueError naming the
  file when it is unreadable (truncated, corrupt) or its vectors are not `feat_num` long."""
  command = ('python -m p2p_jax.encode_features '
             f'--workdir={os.path.dirname(os.path.abspath(path))}')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: cluster the training set\'s features first '
                            f'({command})')
  remake = f'make it again with {command}'
  if path.endswith('.npy'):
    raise ValueError(f'{path}: the official encode_features.py\'s pickled dict, which p2p_jax '
                     f'does not unpickle (plain arrays only); {remake}')
  try:
    with np.load(path, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
    if str(data['version']) != VERSION:
      raise ValueError(f'format {str(data["version"])!r}, not {VERSION!r}')
    file_feat_num = int(data['feat_num'])
    meta = json.loads(str(data['meta']))
    centers = {int(label): data[f'centers_{int(label)}'] for label in data['labels']}
  except (OSError, ValueError, TypeError, EOFError, KeyError, zipfile.BadZipFile) as e:
    why = (str(e).splitlines() or [type(e).__name__])[0]
    raise ValueError(f'{path}: not a readable feature clusters file (truncated or corrupt: '
                     f'{why}); {remake}') from None
  for label, c in centers.items():   # as `save` wrote them
    if c.ndim != 2 or c.shape[1] != file_feat_num or not len(c):
      raise ValueError(f'{path}: label {label} has centers of shape {c.shape}, expected '
                       f'[n, {file_feat_num}]; {remake}')
  if feat_num is not None and file_feat_num != feat_num:
    raise ValueError(f'{path} holds features of length {file_feat_num}, but this model\'s '
                     f'encoder makes {feat_num} (pix2pixhd.feat_num); {remake}')
  return centers, meta


def find(workdir: str) -> str | None:
  """The clusters file translate uses for a run: WORKDIR/features_clustered_010.npz, else
  the only features_clustered_*.npz there (another --n_clusters); None if there is none.
  ValueError (one line, naming them) when there are several and none is the default."""
  default = clusters_path(workdir)
  if os.path.exists(default):
    return default
  made = sorted(glob.glob(os.path.join(glob.escape(workdir), 'features_clustered_*.npz')))
  if len(made) > 1:
    raise ValueError(f'{workdir} has {len(made)} clusters files '
                     f'({", ".join(os.path.basename(m) for m in made)}) and none is '
                     f'{os.path.basename(default)}: rename the one to use to that name')
  return made[0] if made else None


def load_once(path: str, feat_num: int | None = None) -> tuple[dict, dict]:
  """`load`, read again only when the file changed (translate asks for every image;
  encode_features may rewrite it within one notebook session)."""
  stat = os.stat(path) if os.path.exists(path) else None
  key = (os.path.abspath(path), feat_num, stat and (stat.st_mtime_ns, stat.st_size))
  if _CACHE.get('key') != key:
    _CACHE['value'] = load(path, feat_num)
    _CACHE['key'] = key
  return _CACHE['value']


_CACHE = {}


def sample_feature_map(centers: dict, ids, feat_num: int, seed: int = 0) -> np.ndarray:
  """One image's features float32 [H, W, feat_num] from instance ids [H, W] (the
  official sample_features): each instance id i of a label (`label_of`) that has centers
  gets one of them, c drawn from np.random.default_rng([seed, i]), on all its pixels.

  The draw depends only on (seed, i), so an instance gets the same vector wherever it
  appears (any crop, any batch) and another seed gives another photo. Instances whose label has no centers get zeros (the official leaves the
  uninitialised memory of its torch.Tensor there).
  """
  if np.ndim(ids) != 2:
    raise ValueError(f'sample_feature_map takes the instance ids [H, W] of one image, got '
                     f'shape {np.shape(ids)}')
  uniq, inverse = np.unique(np.asarray(ids, np.int64), return_inverse=True)
  table = np.zeros((len(uniq), feat_num), np.float32)
  for j, i in enumerate(uniq.tolist()):
    c = centers.get(label_of(i))
    if c is None or not len(c):
      continue
    if np.shape(c)[-1] != feat_num:
      raise ValueError(f'the centers of label {label_of(i)} have {np.shape(c)[-1]} features, '
                       f'the model {feat_num} (pix2pixhd.feat_num)')
    table[j] = c[np.random.default_rng([seed, i]).integers(len(c))]
  return table[inverse.reshape(np.shape(ids))]
