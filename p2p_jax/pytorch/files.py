"""Reading and writing PyTorch .pth state dicts without depending on PyTorch.

torch is imported only when a file is read or written, and its absence is reported with
the command that installs the CPU build. The mapping of the tensors onto p2p_jax's
variables is in weights.py.
"""

import collections
import contextlib
import os
from typing import Any

import numpy as np

from p2p_jax import stopping
from p2p_jax.pytorch.weights import StateDictError

CPU_WHEELS = 'https://download.pytorch.org/whl/cpu'


class TorchMissingError(ImportError):
  """torch is not installed; the message says how to install the CPU build."""


def _torch(path: str, verb: str):
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise TorchMissingError(f'{verb} {path} needs PyTorch, which p2p_jax does not depend on; '
                            f'the CPU build is enough: pip install torch --index-url '
                            f'{CPU_WHEELS}') from None
  return torch


def read_pth(path: str) -> dict:
  """A .pth state_dict (as the reference's save_networks writes it) as name -> numpy array.

  Loads with weights_only=True (no code runs from the file). Raises FileNotFoundError, or
  StateDictError with a one-line message naming the file when it is truncated or not a
  PyTorch state dict; ImportError with the install command when torch is missing.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file')
  torch = _torch(path, 'reading')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [''])[0].split('. ')[0][:160]  # one sentence
    raise StateDictError(f'{path}: not a readable PyTorch file (truncated or another format): '
                         f'{type(e).__name__}: {first}') from None
  if not hasattr(obj, 'items') or not all(
      isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
    raise StateDictError(f'{path}: holds a {type(obj).__name__}, not a state_dict of tensors')
  return collections.OrderedDict((k, v.detach().cpu().numpy()) for k, v in obj.items())


def write_pth(path: str, state_dict: dict[str, Any]) -> str:
  """Writes name -> array as a .pth state_dict that the reference's load_networks reads."""
  write_pths({path: state_dict})
  return os.fspath(path)


def write_pths(outputs: dict[str, dict[str, Any]]) -> None:
  """write_pth for several files ({path: state_dict}) as one: each goes to a temporary
  file, and they are renamed into place together once all are written, so a failure (a
  full disk) or a stop request leaves every existing file as it was and no temporary
  file, never a new G beside an old D."""
  outputs = {os.fspath(p): sd for p, sd in outputs.items()}
  if not outputs:
    return
  torch = _torch(next(iter(outputs)), 'writing')
  temporary = {path: path + '.tmp' for path in outputs}
  with contextlib.ExitStack() as stack:
    for path, state_dict in outputs.items():
      tmp = temporary[path]
      stack.enter_context(stopping.temporary(tmp))  # no .tmp left, whatever happens
      tensors = collections.OrderedDict(
          (k, torch.from_numpy(np.ascontiguousarray(np.asarray(v))))
          for k, v in state_dict.items())
      try:
        # Through a Python file, so that a full disk is an OSError at least underneath:
        # torch's zip writer turns a write failing part-way into a RuntimeError ("unexpected
        # pos ...") raised while handling it.
        with open(tmp, 'wb') as f:
          torch.save(tensors, f)
      except (OSError, RuntimeError) as e:
        cause = e
        while cause is not None and not isinstance(cause, OSError):
          cause = cause.__context__
        if cause is None:
          raise
        raise OSError(cause.errno, cause.strerror, path) from e
    with stopping.writing():
      for path, tmp in temporary.items():
        os.replace(tmp, path)
