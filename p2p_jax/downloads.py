"""Files from the authors' servers: a fast reachability probe and an all-or-nothing download.

Used for the official datasets (p2p_jax/datasets/pix2pix_aligned.py, whose downloads TFDS
does) and the published PyTorch generators (p2p_jax/pytorch/pretrained.py). Offline, a plain
download would wait for its timeouts (TFDS retries for minutes); `unreachable` answers within
`timeout` so that the caller can fail at once and say where to put the file instead.
"""

import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request

from p2p_jax import stopping


class DownloadError(OSError):
  """A download that did not complete; nothing was left at its destination."""


def unreachable(url: str, timeout: float = 10.0) -> str | None:
  """None if a TCP connection to the URL's server opens within `timeout`, else why not.

  Runs in a thread because a hanging DNS lookup ignores socket timeouts."""
  parts = urllib.parse.urlsplit(url)
  result = []

  def connect():
    try:
      socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout).close()
      result.append(None)
    except OSError as e:
      result.append(f'{type(e).__name__}: {e}')

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout)
  return result[0] if result else f'{parts.hostname} did not answer in {timeout:.0f} s'


def download(url: str, path: str, *, timeout: float = 60.0) -> str:
  """Downloads `url` to `path` (its folder is created); returns path.

  The bytes go into a temporary file beside `path`, renamed to `path` only once complete
  (and as long as the server announced), so an interrupted or failed download never leaves
  a partial file under the final name. Raises DownloadError naming the URL.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.part',
                             dir=directory)
  try:
    # Never a partial file: removed on an error, Ctrl-C included, and by a stop request's
    # exit (stopping.stop_at_once, the trainer's while starting).
    with stopping.temporary(tmp):
      with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=timeout) as response:
        expected = response.headers.get('Content-Length')
        shutil.copyfileobj(response, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
        got = out.tell()
      if expected is not None and got != int(expected):
        raise DownloadError(f'{url}: got {got} of {expected} bytes')
      with stopping.writing():
        os.replace(tmp, path)
  except BaseException as e:
    if isinstance(e, (OSError, ValueError)) and not isinstance(e, DownloadError):
      raise DownloadError(f'{url}: {type(e).__name__}: {e}') from e
    raise
  return path
