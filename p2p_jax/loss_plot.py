"""The training curves as a PNG next to the samples (Pillow only; no plotting library).

The trainer appends every logged scalar to WORKDIR/scalars.jsonl (`ScalarLog`) and redraws
WORKDIR/losses.png from it (`draw`), so the curves survive a resume and can be opened
without TensorBoard. Four panels: the adversarial losses of G and D, the reconstruction
loss, and the validation L1 and PSNR.
"""

import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from p2p_jax import image_io, stopping

LOG_FILE = 'scalars.jsonl'
PLOT_FILE = 'losses.png'
# (panel title, scalars drawn in it); scalars absent from a run are left out.
PANELS = (
    ('adversarial (BCE)', ('G_GAN', 'D_real', 'D_fake')),
    ('reconstruction', ('G_L1', 'G_L2')),
    ('validation L1 (lower is better)', ('val_l1',)),
    ('validation PSNR, dB (higher is better)', ('val_psnr',)),
)
_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))
_PANEL_W, _PANEL_H, _MARGIN = 420, 260, 46


def read_log(workdir: str) -> list[dict]:
  """The rows of WORKDIR/scalars.jsonl ([] when there is none)."""
  path = os.path.join(workdir, LOG_FILE)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except ValueError:
        pass  # a line cut short by a kill
  return rows


class ScalarLog:
  """{step, name: value} lines in WORKDIR/scalars.jsonl; a resumed run drops what lies past
  the step it resumes from (logged by a run that stopped before its next checkpoint)."""

  def __init__(self, workdir: str, start_step: int):
    self.path = os.path.join(workdir, LOG_FILE)
    kept = [r for r in read_log(workdir) if r['step'] <= start_step]
    tmp = self.path + '.tmp'
    with stopping.temporary(tmp):  # no .tmp left by a full disk either
      with open(tmp, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in kept)
      os.replace(tmp, self.path)

  def append(self, step: int, values: dict) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **{k: float(v) for k, v in values.items()}})
              + '\n')


def _series(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
  series = {}
  for row in rows:
    for name, value in row.items():
      if name != 'step' and math.isfinite(value):
        series.setdefault(name, []).append((row['step'], value))
  return series


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
  if hi <= lo:
    return [lo]
  raw = (hi - lo) / n
  step = 10 ** math.floor(math.log10(raw))
  step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
  first = math.ceil(lo / step) * step
  return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _panel(title: str, lines: dict, font) -> Image.Image:
  image = Image.new('RGB', (_PANEL_W, _PANEL_H), 'white')
  draw = ImageDraw.Draw(image)
  draw.text((_MARGIN, 6), title, fill='black', font=font)
  left, top, right, bottom = _MARGIN, 40, _PANEL_W - 28, _PANEL_H - 28
  draw.rectangle((left, top, right, bottom), outline=(160, 160, 160))
  points = [p for values in lines.values() for p in values]
  if not points:
    draw.text((left + 10, top + 10), 'no values yet', fill='gray', font=font)
    return image
  x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
  y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
  if x1 == x0:
    x1 = x0 + 1
  if y1 == y0:
    y0, y1 = y0 - 0.5 * abs(y0 or 1), y1 + 0.5 * abs(y1 or 1)
  sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)
  sy = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)
  for y in _ticks(y0, y1):
    draw.line((left, sy(y), right, sy(y)), fill=(230, 230, 230))
    draw.text((2, sy(y) - 6), f'{y:.3g}', fill='black', font=font)
  for x in _ticks(x0, x1):
    draw.text((sx(x), bottom + 4), f'{x:g}', fill='black', font=font, anchor='ma')
  for i, (name, values) in enumerate(sorted(lines.items())):
    colour = _COLOURS[i % len(_COLOURS)]
    xy = [(sx(x), sy(y)) for x, y in sorted(values)]
    if len(xy) > 1:
      draw.line(xy, fill=colour, width=2)
    for px, py in xy[-1:] if len(xy) > 1 else xy:
      draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
    # Legend under the title: each curve's name and its last value.
    draw.text((left + 130 * i, 22), f'{name} {values[-1][1]:.3g}', fill=colour, font=font)
  return image


def draw(workdir: str) -> str:
  """Redraws WORKDIR/losses.png from WORKDIR/scalars.jsonl; returns its path."""
  series = _series(read_log(workdir))
  font = ImageFont.load_default(size=12)
  panels = [_panel(title, {n: series[n] for n in names if n in series}, font)
            for title, names in PANELS]
  canvas = Image.new('RGB', (2 * _PANEL_W, 2 * _PANEL_H), 'white')
  for i, panel in enumerate(panels):
    canvas.paste(panel, ((i % 2) * _PANEL_W, (i // 2) * _PANEL_H))
  path = os.path.join(workdir, PLOT_FILE)
  image_io.write_png(path, np.asarray(canvas))
  return path
