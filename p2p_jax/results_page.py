"""The results of an evaluation as a static HTML page and a PNG grid.

Like the PyTorch reference's results page (results/<name>/test_latest/index.html): one row
per test image, input | output | target, here with the image's metrics and, at the top,
how the outputs were made (inference mode, checkpoint, seed) and the averages.
The page links to PNG files next to it, so the folder can be copied or served as it is.
"""

import html
import os

import numpy as np

from p2p_jax import image_io

PAGE = 'index.html'
GRID = 'grid.png'


def _fmt(value) -> str:
  if isinstance(value, (float, np.floating)):
    return f'{float(value):.4f}'
  return str(value)


def write_results_page(out_dir: str, rows: list[dict], header: dict,
                       title: str = 'p2p_jax results', figures: tuple[str, ...] = (),
                       images: tuple[str, ...] = ('input', 'output', 'target')) -> str:
  """Writes OUT_DIR/index.html; returns its path.

  rows: per image {'name', 'input', 'output', 'target'} (the `images` columns: paths
    relative to out_dir) plus any metric columns (floats), in the order to show.
  header: key -> value shown above the table (mode, checkpoint, seed, averages, ...).
  figures: images (paths relative to out_dir) shown between the header and the table, e.g.
    the training curves.
  """
  metric_keys = [k for k in (rows[0] if rows else {}) if k != 'name' and k not in images]
  esc = html.escape
  lines = [
      '<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
      f'<title>{esc(title)}</title>',
      '<style>body{font-family:sans-serif} td{padding:4px;vertical-align:top;'
      'text-align:center} img{image-rendering:pixelated;width:256px}'
      ' table.meta td{text-align:left} img.figure{width:auto;max-width:100%}</style>',
      '</head><body>', f'<h1>{esc(title)}</h1>', '<table class="meta">']
  for key, value in header.items():
    lines.append(f'<tr><td><b>{esc(str(key))}</b></td><td>{esc(_fmt(value))}</td></tr>')
  lines.append('</table>')
  lines += [f'<p><img class="figure" src="{esc(f.replace(os.sep, "/"), quote=True)}" '
            f'alt="{esc(f)}"></p>' for f in figures]
  lines += ['<table>',
            '<tr><th>name</th>' + ''.join(f'<th>{esc(k)}</th>' for k in images) +
            ''.join(f'<th>{esc(k)}</th>' for k in metric_keys) + '</tr>']
  for row in rows:
    cells = [f'<td>{esc(str(row["name"]))}</td>']
    for kind in images:
      src = esc(row[kind].replace(os.sep, '/'), quote=True)
      cells.append(f'<td><img src="{src}" alt="{kind}"><br>{kind}</td>')
    cells += [f'<td>{esc(_fmt(row[k]))}</td>' for k in metric_keys]
    lines.append('<tr>' + ''.join(cells) + '</tr>')
  lines += ['</table>', '</body></html>', '']
  path = os.path.join(out_dir, PAGE)
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  return path


def _rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = image_io.to_uint8(image)
  if image.ndim == 2:
    image = image[..., None]
  return image_io.to_channels(image, 3)


def make_grid(triples: list[tuple[np.ndarray, ...]], gap: int = 2) -> np.ndarray:
  """One row per (input, output, target) tuple, side by side, white gaps; uint8 RGB."""
  if not triples:
    raise ValueError('make_grid needs at least one row')
  rows = []
  for triple in triples:
    images = [_rgb(im) for im in triple]
    h = max(im.shape[0] for im in images)
    parts = []
    for im in images:
      pad = np.full((h, im.shape[1] + gap, 3), 255, np.uint8)
      pad[:im.shape[0], :im.shape[1]] = im
      parts.append(pad)
    rows.append(np.concatenate(parts, axis=1))
  width = max(r.shape[1] for r in rows)
  grid = np.full((sum(r.shape[0] + gap for r in rows), width, 3), 255, np.uint8)
  y = 0
  for r in rows:
    grid[y:y + r.shape[0], :r.shape[1]] = r
    y += r.shape[0] + gap
  return grid


def write_grid(path: str, triples, metadata: dict | None = None) -> str:
  """Writes `make_grid(triples)` as PNG with `metadata` in its text chunks."""
  image_io.write_png(path, make_grid(list(triples)), metadata)
  return path

