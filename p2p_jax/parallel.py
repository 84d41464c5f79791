"""The one module that knows about devices, meshes and processes.

Steps are written per replica with collectives over the axis named `AXIS` ('batch').
`data_parallel` maps such a function over all devices, either with jax.pmap (the classic
form) or with jax.jit over jax.shard_map (the modern one). In both, the state goes in and
comes out unreplicated (one logical copy, the same on every device) and the batch is split
along its leading axis; callers pass host-local numpy batches and never see devices.
"""

import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'batch'
MODES = ('pmap', 'shard_map')


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_main_process() -> bool:
  """Only process 0 writes logs, samples and (through Orbax's coordination) checkpoints."""
  return jax.process_index() == 0


def device_count() -> int:
  return jax.device_count()


def local_batch_size(global_batch: int, devices=None) -> int:
  """This process's share of the global batch; each device gets the same number."""
  devices = list(devices) if devices is not None else jax.devices()
  n = len(devices)
  if global_batch % n:
    raise ValueError(f'batch_size {global_batch} must be divisible by the number of '
                     f'devices ({n}); use a multiple of {n}')
  local = [d for d in devices if d.process_index == jax.process_index()]
  return global_batch // n * len(local)


def maybe_initialize_distributed(enabled: bool) -> None:
  """jax.distributed.initialize() for multi-host runs (arguments come from the env)."""
  if enabled:
    jax.distributed.initialize()


class DataParallel:
  """A per-replica function mapped over devices; see module docstring.

  Attributes:
    fn: f(state, batch, *rest) written per replica with collectives over AXIS.
    mode: 'pmap' or 'shard_map'.
    devices: devices to use (default: all). One device gives the plain single-device step.
    batched_out: whether outputs are per-example (concatenated over devices, e.g. images)
      instead of invariant (the new state and averaged metrics).
    donate: donate the state argument (halves memory for the train step).
  """

  def __init__(self, fn: Callable, mode: str = 'pmap', devices=None,
               batched_out: bool = False, donate: bool = False):
    if mode not in MODES:
      raise ValueError(f"parallel must be one of {MODES}, got {mode!r}")
    self.mode = mode
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    out_axis = 0 if batched_out else None
    if mode == 'pmap':
      self._fn = jax.pmap(fn, axis_name=AXIS, in_axes=(None, 0), out_axes=out_axis,
                          devices=self.devices, donate_argnums=(0,) if donate else ())
    else:
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
      out_spec = P(AXIS) if batched_out else P()
      mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=out_spec)
      self._fn = jax.jit(mapped, donate_argnums=(0,) if donate else ())
    self.batched_out = batched_out

  def put_state(self, state):
    """Places the (unreplicated) state on the devices, ready to be passed in."""
    if self.mode == 'pmap':
      return state
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def _split(self, batch):
    n = len(self.local_devices)

    def split(a):
      a = np.asarray(a)
      if a.shape[0] % n:
        raise ValueError(f'the host batch of {a.shape[0]} examples does not split over '
                         f'{n} local devices')
      if self.mode == 'pmap':
        return a.reshape((n, a.shape[0] // n) + a.shape[1:])
      return jax.make_array_from_process_local_data(NamedSharding(self.mesh, P(AXIS)), a)
    return jax.tree.map(split, batch)

  def __call__(self, state, batch) -> Any:
    """Runs the mapped function on this host's numpy batch."""
    out = self._fn(state, self._split(batch))
    if self.batched_out and self.mode == 'pmap':
      out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    return out

  def lower(self, state, batch):
    """jax lowering of the mapped function for this batch (cost analysis, compile time)."""
    return self._fn.lower(state, self._split(batch))


def fetch(tree):
  """Device values -> host numpy (blocks); used for metrics only every N steps."""
  return jax.tree.map(np.asarray, jax.device_get(tree))
