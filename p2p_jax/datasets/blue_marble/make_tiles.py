"""Cuts the embedded Blue Marble tiles (grey | colour) from the global maps of Debian's Marble.

Inputs (Debian package `marble-qt-data`, under usr/share/marble/data/):
  maps/earth/bluemarble/bluemarble.jpg  NASA Blue Marble Next Generation: the Earth by day,
                                        2700x1350 equirectangular (public domain).
  --pair=map only:
  maps/earth/srtm/3/*/*.jpg             NASA SRTM30 elevation with sea-floor depths, the
                                        texture of Marble's "Atlas" theme: 16x8 greyscale
                                        tiles of 675x675, 10800x5400 in all, on the same
                                        grid (public domain).
  landcolors.leg, seacolors.leg         the Atlas theme's colour ramps for land and sea.

Output, in the standard aligned pix2pix format (A|B side by side):
  --pair=grey (what ships): A = the photo in grey (ITU-R 601 luma, as Pillow's convert('L'),
    the input pipeline and translate make a 1-channel input), B = the photo in colour.
  --pair=map: A = the photo, B = a physical map of the same place: the elevation coloured as
    Marble's Atlas theme colours it (without its hill shading): grey levels at or above
    SEA_LEVEL take the land ramp (green lowlands, ochre uplands, white peaks), the others the
    sea ramp (pale shelves, blue deeps). The map is drawn at the elevation's resolution and
    averaged 4x4 onto the photo's grid, so coasts are anti-aliased as Marble draws them.
    Lakes and glaciers are coloured by their surface height (Marble paints them from vector
    polygons this leaves out).

Tiles (TILE = 128 px at the photo's native resolution, about 15 km per pixel at the equator),
the same windows for every pairing:
  test   the map is cut into a grid of TILE x TILE cells starting at its top-left corner;
         cells with at least MIN_LAND ice-free land (on the photo: ocean where blue clearly
         dominates, ice where all three channels are bright) are candidates, and
         NUM_TEST of them, drawn by numpy.random.default_rng(TEST_SEED).choice, are the
         test tiles. The rule was fixed before any model was trained on these tiles.
  train  windows of TILE + JITTER px (the random crop of training then moves by up to
         JITTER px, with no resampling), every STRIDE px, with at least MIN_LAND land, and
         overlapping no test tile: no test pixel is ever seen in training.
File names give the tile centre in degrees (`N36.0_E138.0.jpg`). JPEG quality QUALITY.

Reproduce (the output is byte-identical for the same numpy, Pillow and libjpeg):
  apt-get download marble-qt-data && dpkg -x marble-qt-data_*.deb /tmp/marble
  python p2p_jax/datasets/blue_marble/make_tiles.py \
      --marble_dir=/tmp/marble/usr/share/marble/data --out_dir=p2p_jax/datasets/blue_marble
A rerun replaces the tiles in --out_dir; bump pix2pix_aligned.EMBEDDED_REVISION when they
change, so that data_dirs holding the old ones prepare them afresh.
"""

import argparse
import glob
import os

import numpy as np
from PIL import Image

TILE = 128
JITTER = 16
STRIDE = 32
MIN_LAND = 0.35
NUM_TEST = 16
TEST_SEED = 0
QUALITY = 90
SEA_LEVEL = 97  # Grey level of 0 m in the SRTM30 texture: the peak of its histogram.
SRTM_ROWS, SRTM_COLS = 8, 16  # Level-3 tiles of Marble's srtm theme.


def land_mask(day: np.ndarray) -> np.ndarray:
  """True where the day photo shows ice-free land."""
  r, g, b = (day[..., i].astype(np.int32) for i in range(3))
  ocean = (b > r + 15) & (b > g)
  ice = (r > 180) & (g > 180) & (b > 180)
  return ~ocean & ~ice


def read_ramp(path: str) -> np.ndarray:
  """A Marble .leg colour ramp (`#rrggbb=position` lines) as a [256, 3] float table, sampled
  at the centres of the 256 grey levels as Qt's linear gradient paints it."""
  stops = []
  with open(path) as f:
    for line in f:
      colour, sep, position = line.strip().partition('=')
      if sep:
        stops.append((float(position), [int(colour[i:i + 2], 16) for i in (1, 3, 5)]))
  stops.sort()
  positions = np.array([p for p, _ in stops])
  colours = np.array([c for _, c in stops], np.float64)
  x = (np.arange(256) + 0.5) / 256
  return np.stack([np.interp(x, positions, colours[:, k]) for k in range(3)], -1)


def elevation_mosaic(srtm_dir: str) -> np.ndarray:
  """The level-3 SRTM30 tiles as one uint8 [5400, 10800] grey image."""
  rows = []
  for r in range(SRTM_ROWS):
    names = sorted(glob.glob(os.path.join(srtm_dir, f'{r:06d}', f'{r:06d}_*.jpg')))
    if len(names) != SRTM_COLS:
      raise SystemExit(f'{srtm_dir}/{r:06d}: expected {SRTM_COLS} tiles, found {len(names)}')
    rows.append(np.concatenate([np.asarray(Image.open(n).convert('L')) for n in names], 1))
  return np.concatenate(rows, 0)


def atlas_map(elevation: np.ndarray, land_ramp: np.ndarray, sea_ramp: np.ndarray,
              size: tuple[int, int]) -> np.ndarray:
  """uint8 [H, W, 3] physical map on a grid of `size` (W, H), a whole multiple of the
  elevation's: coloured at the elevation's resolution, then averaged block by block."""
  width, height = size
  fy, fx = elevation.shape[0] // height, elevation.shape[1] // width
  if (fy * height, fx * width) != elevation.shape:
    raise SystemExit(f'elevation {elevation.shape} is not a multiple of the photo {size}')
  coloured = np.where((elevation >= SEA_LEVEL)[..., None], land_ramp[elevation],
                      sea_ramp[elevation])
  blocks = coloured.reshape(height, fy, width, fx, 3).mean(axis=(1, 3))
  return np.rint(blocks).clip(0, 255).astype(np.uint8)


def select_windows(land: np.ndarray) -> tuple[list, list]:
  """(train windows, test tiles): lists of (top, left, size), see the module docstring."""
  height, width = land.shape
  cells = [(y, x) for y in range(0, height - TILE + 1, TILE)
           for x in range(0, width - TILE + 1, TILE)
           if land[y:y + TILE, x:x + TILE].mean() >= MIN_LAND]
  chosen = np.random.default_rng(TEST_SEED).choice(len(cells), NUM_TEST, replace=False)
  test = [(*cells[i], TILE) for i in sorted(chosen)]
  size = TILE + JITTER
  train = []
  for y in range(0, height - size + 1, STRIDE):
    for x in range(0, width - size + 1, STRIDE):
      if land[y:y + size, x:x + size].mean() < MIN_LAND:
        continue
      if any(y < ty + TILE and ty < y + size and x < tx + TILE and tx < x + size
             for ty, tx, _ in test):
        continue  # Overlaps a held-out tile.
      train.append((y, x, size))
  return train, test


def tile_name(y: int, x: int, size: int, height: int, width: int) -> str:
  """File name from the window centre, e.g. N36.0_E138.0.jpg."""
  lat = 90 - (y + size / 2) / height * 180
  lon = (x + size / 2) / width * 360 - 180
  return (f"{'N' if lat >= 0 else 'S'}{abs(lat):04.1f}_"
          f"{'E' if lon >= 0 else 'W'}{abs(lon):05.1f}.jpg")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--marble_dir', default='/usr/share/marble/data')
  parser.add_argument('--out_dir', default=os.path.dirname(os.path.abspath(__file__)))
  parser.add_argument('--pair', default='grey', choices=('grey', 'map'),
                      help='grey: grey | colour photo (what ships); map: photo | physical map')
  args = parser.parse_args()
  earth = os.path.join(args.marble_dir, 'maps', 'earth')
  photo = Image.open(os.path.join(earth, 'bluemarble', 'bluemarble.jpg')).convert('RGB')
  width, height = photo.size
  day = np.asarray(photo)
  if args.pair == 'grey':
    # ITU-R 601 luma, as the input pipeline and translate make a 1-channel input.
    a_side, b_side = np.repeat(np.asarray(photo.convert('L'))[..., None], 3, -1), day
  else:
    a_side, b_side = day, atlas_map(elevation_mosaic(os.path.join(earth, 'srtm', '3')),
                                    read_ramp(os.path.join(args.marble_dir, 'landcolors.leg')),
                                    read_ramp(os.path.join(args.marble_dir, 'seacolors.leg')),
                                    (width, height))
  train, test = select_windows(land_mask(day))
  for split, windows in (('train', train), ('test', test)):
    folder = os.path.join(args.out_dir, split)
    os.makedirs(folder, exist_ok=True)
    for old in glob.glob(os.path.join(folder, '*.jpg')):
      os.remove(old)  # A rerun with other parameters leaves no stale tiles behind.
    for y, x, size in windows:
      pair = np.concatenate([a_side[y:y + size, x:x + size], b_side[y:y + size, x:x + size]], 1)
      Image.fromarray(pair).save(os.path.join(folder, tile_name(y, x, size, height, width)),
                                 'JPEG', quality=QUALITY, optimize=True)
    print(f'{split}: {len(windows)} tiles -> {folder}')


if __name__ == '__main__':
  main()
