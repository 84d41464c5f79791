"""Cuts the embedded Blue Marble day|night dataset from NASA's global maps.

Inputs (public domain, NASA; shipped in Debian's `marble-qt-data` package):
  bluemarble.jpg  - Blue Marble Next Generation day map, 2700x1350 equirectangular.
  citylights.jpg  - Earth at night (city lights), same grid, pixel-aligned with the day map.

Output, in the standard aligned pix2pix format (A|B side by side, A = day, B = night):
  <out>/train/*.jpg and <out>/test/*.jpg, each 512x256 (two 256x256 tiles at native resolution,
  about 15 km per pixel at the equator), named by the tile centre, e.g. `N36.0_E138.0.jpg`.

Tiles: a 256x256 window slides over the map with a stride of 48 px; a window is kept when at
least 35% of it is ice-free land (ocean is where blue clearly dominates, ice where all three
channels are bright). Test tiles are fixed windows centred on the places in `TEST_CENTRES`;
every training window that overlaps a test window is dropped, so no test pixel is ever seen
in training (training windows overlap each other, which is just more of the random-crop
jitter the pipeline applies anyway).

Reproduce (output is byte-identical for the same Pillow/libjpeg):
  apt-get download marble-qt-data && dpkg -x marble-qt-data_*.deb /tmp/marble
  python p2p_jax/datasets/blue_marble/make_tiles.py \
      --maps_dir=/tmp/marble/usr/share/marble/data/maps/earth \
      --out_dir=p2p_jax/datasets/blue_marble
"""

import argparse
import os

import numpy as np
from PIL import Image

TILE = 256
STRIDE = 48
MIN_LAND = 0.35
QUALITY = 90
# (lat, lon) of the held-out test windows: Japan, Italy, Florida, SE Australia, Britain,
# the Nile delta, the Philippines, Java. Coastal places, so little land is lost to training.
TEST_CENTRES = ((36, 138), (42, 13), (28, -82), (-34, 148), (53, -2), (30, 31), (14, 121),
                (-7, 110))


def land_mask(day: np.ndarray) -> np.ndarray:
  """True where the day map shows ice-free land."""
  r, g, b = (day[..., i].astype(np.int32) for i in range(3))
  ocean = (b > r + 15) & (b > g)
  ice = (r > 180) & (g > 180) & (b > 180)
  return ~ocean & ~ice


def window_at(lat: float, lon: float, height: int, width: int) -> tuple[int, int]:
  """Top-left (y, x) of the TILE window centred on (lat, lon), clamped to the map."""
  y = int(round((90 - lat) / 180 * height)) - TILE // 2
  x = int(round((lon + 180) / 360 * width)) - TILE // 2
  return min(max(y, 0), height - TILE), min(max(x, 0), width - TILE)


def tile_name(y: int, x: int, height: int, width: int) -> str:
  """File name from the window centre, e.g. N36.0_E138.0.jpg."""
  lat = 90 - (y + TILE / 2) / height * 180
  lon = (x + TILE / 2) / width * 360 - 180
  return (f"{'N' if lat >= 0 else 'S'}{abs(lat):04.1f}_"
          f"{'E' if lon >= 0 else 'W'}{abs(lon):05.1f}.jpg")


def select_windows(land: np.ndarray) -> tuple[list, list]:
  """Returns (train, test) lists of top-left corners."""
  height, width = land.shape
  test = [window_at(lat, lon, height, width) for lat, lon in TEST_CENTRES]
  train = []
  for y in range(0, height - TILE + 1, STRIDE):
    for x in range(0, width - TILE + 1, STRIDE):
      if land[y:y + TILE, x:x + TILE].mean() < MIN_LAND:
        continue
      if any(abs(y - ty) < TILE and abs(x - tx) < TILE for ty, tx in test):
        continue  # Overlaps a held-out window.
      train.append((y, x))
  return train, test


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--maps_dir', default='/usr/share/marble/data/maps/earth')
  parser.add_argument('--out_dir', default=os.path.dirname(os.path.abspath(__file__)))
  args = parser.parse_args()
  day = Image.open(os.path.join(args.maps_dir, 'bluemarble', 'bluemarble.jpg')).convert('RGB')
  night = Image.open(os.path.join(args.maps_dir, 'citylights', 'citylights.jpg')).convert('RGB')
  if day.size != night.size:
    raise SystemExit(f'day map is {day.size}, night map {night.size}: not aligned')
  width, height = day.size
  train, test = select_windows(land_mask(np.asarray(day)))
  for split, windows in (('train', train), ('test', test)):
    folder = os.path.join(args.out_dir, split)
    os.makedirs(folder, exist_ok=True)
    for y, x in windows:
      pair = Image.new('RGB', (2 * TILE, TILE))
      pair.paste(day.crop((x, y, x + TILE, y + TILE)), (0, 0))
      pair.paste(night.crop((x, y, x + TILE, y + TILE)), (TILE, 0))
      pair.save(os.path.join(folder, tile_name(y, x, height, width)), 'JPEG',
                quality=QUALITY, optimize=True)
    print(f'{split}: {len(windows)} tiles -> {folder}')


if __name__ == '__main__':
  main()
