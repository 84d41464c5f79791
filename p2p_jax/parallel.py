"""The one module that knows about devices, meshes and processes.

Steps are written per replica with collectives over the axis named `AXIS` ('batch').
`data_parallel` maps such a function over all devices, either with jax.pmap (the classic
form) or with jax.jit over jax.shard_map (the modern one). In both, the state goes in and
comes out unreplicated (one logical copy, the same on every device) and the batch is split
along its leading axis; callers pass host-local numpy batches and never see devices.

Multi-process (TPU pod slices, multi-node GPU; `maybe_initialize_distributed`): every
process runs the same program on its own share of the batch (`local_batch_size`); the
devices of all processes form one data-parallel axis, so gradients are averaged over the
global batch. The state is then a global array replicated on every device of every process,
which is what Orbax needs to save it, in both modes (jax.pmap takes such arrays as they are
but returns host-local ones; DataParallel turns them back into global arrays). Work on one
process's devices only (the trainer's validation through inference.TrainedGenerator) takes
`to_local(tree)`; numbers computed on each process's data are combined with
`sum_over_processes`. tests/test_multihost.py checks that 2 processes x 2 devices train
exactly as 1 process x 4 devices.

Spatial partitioning (`spatial` > 1, config.compute.spatial; mapping 'shard_map' only):
for images one device cannot hold, each replica is a group of `spatial` devices that
split every image's height between them. The mesh is then (AXIS, SPATIAL_AXIS), devices
grouped in consecutive runs of `spatial`; the per-replica step is mapped by shard_map over
AXIS alone (its collectives and batch mean unchanged), while SPATIAL_AXIS stays an
automatic axis: the batch's image leaves (ndim >= 3, height at axis 1) come in split
along it and XLA's SPMD partitioner splits every computation on them, exchanging the halo
rows of each convolution and the partial sums of every reduction over the image (instance
and batch norm statistics, losses) between the group's devices. The step's code does not
change and knows nothing of it; the results equal the unsplit step's up to float rounding
(tests/test_spatial.py). The state stays replicated on every device.
"""

import os
import time
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'batch'
# The mesh axis over which each image's height is split (spatial partitioning).
SPATIAL_AXIS = 'spatial'
# How a per-replica function is mapped over the devices (config.compute.mapping).
MAPPINGS = ('pmap', 'shard_map')


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_main_process() -> bool:
  """Only process 0 writes logs, samples and (through Orbax's coordination) checkpoints."""
  return jax.process_index() == 0


def accelerated() -> bool:
  """Whether JAX computes on an accelerator (GPU, TPU) rather than on this host's CPU."""
  return jax.default_backend() != 'cpu'


def device_count() -> int:
  return jax.device_count()


def devices(given=None) -> list:
  """`given` as a list, or every device of every process (what training uses by default)."""
  return list(given) if given is not None else jax.devices()


def local_devices(given=None) -> list:
  """`given` as a list, or this process's devices (what inference uses by default)."""
  return list(given) if given is not None else jax.local_devices()


def on_first_local_device(abstract):
  """ShapeDtypeStruct leaves without a sharding (e.g. from jax.eval_shape) placed on this
  process's first device; leaves with one keep it."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: x if getattr(x, 'sharding', None) is not None else
                      jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)


def check_spatial(spatial: int, devices=None) -> None:
  """ValueError unless `spatial` devices of one process can share each image: >= 1, and
  dividing the number of devices of every process (a group never spans two processes)."""
  devices = list(devices) if devices is not None else jax.devices()
  if not isinstance(spatial, int) or spatial < 1:
    raise ValueError(f'config.compute.spatial must be an integer >= 1, got {spatial!r}')
  per_process = {}
  for d in devices:
    per_process[d.process_index] = per_process.get(d.process_index, 0) + 1
  for count in per_process.values():
    if count % spatial:
      raise ValueError(f'config.compute.spatial ({spatial}) must divide the number of '
                       f'devices of each process ({count}): each image is split over '
                       f'{spatial} devices of one process')


def local_batch_size(global_batch: int, devices=None, spatial: int = 1) -> int:
  """This process's share of the global batch; each replica (a device, or a group of
  `spatial` devices that split each image) gets the same number."""
  devices = list(devices) if devices is not None else jax.devices()
  check_spatial(spatial, devices)
  n = len(devices) // spatial
  if global_batch % n:
    what = (f'replicas ({n}: {len(devices)} devices / compute.spatial {spatial})'
            if spatial > 1 else f'devices ({n})')
    raise ValueError(f'batch_size {global_batch} must be divisible by the number of '
                     f'{what}; use a multiple of {n}')
  local = [d for d in devices if d.process_index == jax.process_index()]
  return global_batch // n * (len(local) // spatial)


# Read here when maybe_initialize_distributed is not given them (JAX itself reads
# JAX_COORDINATOR_ADDRESS): enough to start processes by hand, e.g. on one machine.
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None or not value.strip():
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'environment variable {name} must be an integer, got {value!r}') from None


def maybe_initialize_distributed(enabled: bool, *, coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """Starts JAX's multi-process runtime (`jax.distributed.initialize`) when `enabled`.

  Arguments left None come from the environment: JAX_COORDINATOR_ADDRESS ('host:port' of
  process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID; where those are unset too, JAX detects
  Cloud TPU pod slices, SLURM and Open MPI by itself. A no-op when the runtime is already
  up (a launcher or notebook started it). Must run before anything touches a device.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  if num_processes is None:
    num_processes = _env_int(ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(ENV_PROCESS_ID)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def process_share(total: int) -> int:
  """This process's part of `total` items split over processes (-1, meaning all, stays -1).

  The first `total % process_count` processes take one more, so the parts add up to total.
  """
  if total < 0:
    return total
  n, p = jax.process_count(), jax.process_index()
  return total // n + (p < total % n)


def sum_over_processes(values) -> np.ndarray:
  """Elementwise sum of a small array over all processes; the identity with one process.

  A collective: every process must call it, the same number of times. Goes through JAX, so
  float64 becomes float32 unless jax_enable_x64 is set (counts stay exact below 2**24).
  """
  values = np.asarray(values)
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.process_allgather(values)).sum(axis=0)


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name`; a no-op with one process.

  For file-system changes one process makes that the others must then see (a collective:
  every process must call it, in the same order)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def to_local(tree):
  """Replicated global arrays -> this process's copy on its first device (no transfer).

  For work confined to one process's devices (the trainer's validation), which cannot take
  arrays that live partly on other processes. Other leaves pass through unchanged, so this is
  the identity in a single process. Raises ValueError for an array that is split over
  processes rather than replicated (each process holds only part of it).
  """
  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return x
    if not x.is_fully_replicated:
      raise ValueError(f'to_local: an array of shape {x.shape} is split over processes '
                       f'({x.sharding}); only replicated arrays have a full local copy')
    return x.addressable_data(0)
  return jax.tree.map(one, tree)


class DataParallel:
  """A per-replica function mapped over devices; see module docstring.

  Attributes:
    fn: f(state, batch, *rest) written per replica with collectives over AXIS.
    mapping: one of MAPPINGS.
    devices: devices to use (default: all). One device gives the plain single-device step.
    batched_out: whether outputs are per-example (concatenated over devices, e.g. images)
      instead of invariant (the new state and averaged metrics).
    donate: donate the state argument (halves memory for the train step).
    constants: None, or a pytree of arrays that `fn` gets as a third argument at every call
      (fn(state, batch, constants)), placed replicated on the devices once, here: weights
      a step reads but does not train (pix2pixHD's VGG19), kept out of the state (and so
      out of checkpoints) and out of the compiled program's constants. A pytree of
      jax.ShapeDtypeStruct instead: shapes only, for `lower` (memory analysis without
      the weights, benchmarks/pix2pixhd_memory.py); such a DataParallel cannot be called.
    spatial: devices per replica that split each image's height (module docstring);
      1: plain data parallelism. Needs mapping 'shard_map'.
  """

  def __init__(self, fn: Callable, mapping: str = 'pmap', devices=None,
               batched_out: bool = False, donate: bool = False, constants: Any = None,
               spatial: int = 1):
    self.mapping = mapping
    self.devices = list(devices) if devices is not None else jax.devices()
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]
    # Devices of other processes too: the state must then be a global array (see module doc).
    self.spans_processes = len(self.local_devices) < len(self.devices)
    check_spatial(spatial, self.devices)
    if spatial > 1 and mapping != 'shard_map':
      raise ValueError(f"config.compute.spatial ({spatial}) needs config.compute.mapping "
                       f"'shard_map' (jax.pmap cannot split an image), got {mapping!r}")
    self.spatial = spatial
    if spatial > 1:
      # Consecutive devices (of one process: check_spatial) share an image.
      self.mesh = Mesh(np.asarray(self.devices).reshape(-1, spatial), (AXIS, SPATIAL_AXIS))
    else:
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
    out_axis = 0 if batched_out else None
    # The constants go in as the state does: unmapped, replicated on every device.
    abstract = constants is not None and all(
        isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(constants))
    self._extra = () if constants is None else (
        self.abstract_state(constants) if abstract else self.put_state(constants),)
    in_axes = (None, 0) + (None,) * len(self._extra)
    if mapping == 'pmap':
      self._fn = jax.pmap(fn, axis_name=AXIS, in_axes=in_axes, out_axes=out_axis,
                          devices=self.devices, donate_argnums=(0,) if donate else ())
    else:
      out_spec = P(AXIS) if batched_out else P()
      in_specs = (P(), P(AXIS)) + (P(),) * len(self._extra)
      # On one replica the step skips its cross-device means (see train_step.py), so its
      # outputs are not provably replicated; over one replica there is nothing to check.
      # With spatial > 1 only AXIS is manual: SPATIAL_AXIS is left to XLA's partitioner.
      mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_spec,
                             axis_names={AXIS}, check_vma=self.mesh.shape[AXIS] > 1)
      self._fn = jax.jit(mapped, donate_argnums=(0,) if donate else ())
    self.batched_out = batched_out

  def put_state(self, state):
    """Places the (unreplicated) state on the devices, ready to be passed in.

    With several processes every process must pass the same values (same seed / checkpoint).
    """
    return jax.device_put(state, self.state_sharding())

  def state_sharding(self):
    """Where the unreplicated state lives: replicated on every device of the mesh. pmap
    returns its unmapped outputs in this form too, so the state is placed like this from the
    start and the step compiles once."""
    return NamedSharding(self.mesh, P())

  def _to_global(self, a):
    """pmap's replicated output (on this process's devices) -> the same value as a global
    array replicated over every process's devices, as state_sharding() says."""
    shards = [s.data for s in a.addressable_shards]
    return jax.make_array_from_single_device_arrays(a.shape, self.state_sharding(), shards)

  def batch_sharding(self, ndim: int) -> NamedSharding:
    """Where a batch leaf of `ndim` dimensions goes (shard_map): split over the replicas
    along axis 0 and, with spatial > 1 and ndim >= 3 (images [N, H, W(, C)]), over each
    replica's devices along axis 1 (the height)."""
    if self.spatial > 1 and ndim >= 3:
      return NamedSharding(self.mesh, P(AXIS, SPATIAL_AXIS))
    return NamedSharding(self.mesh, P(AXIS))

  def _split(self, batch):
    n = len(self.local_devices) // self.spatial

    def split(a):
      if isinstance(a, jax.ShapeDtypeStruct):  # shapes only (lower, e.g. for another machine)
        if self.mapping == 'pmap':
          return jax.ShapeDtypeStruct((n, a.shape[0] // n) + a.shape[1:], a.dtype)
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.batch_sharding(len(a.shape)))
      a = np.asarray(a)
      if a.shape[0] % n:
        what = 'replicas' if self.spatial > 1 else 'devices'
        raise ValueError(f'the host batch of {a.shape[0]} examples does not split over '
                         f'{n} local {what}')
      if self.mapping == 'pmap':
        return a.reshape((n, a.shape[0] // n) + a.shape[1:])
      if self.spatial > 1 and a.ndim >= 3 and a.shape[1] % self.spatial:
        raise ValueError(f'config.compute.spatial ({self.spatial}) must divide the image '
                         f'height, got images of shape {a.shape[1:]}')
      return jax.make_array_from_process_local_data(self.batch_sharding(a.ndim), a)
    return jax.tree.map(split, batch)

  def __call__(self, state, batch) -> Any:
    """Runs the mapped function on this host's numpy batch.

    Outputs: invariant ones as the state (state_sharding()); batched ones of pmap as this
    host's examples, of shard_map as a global array split over the mesh.
    """
    # A multi-process pmap takes the global state as it is. (Not its host-local copy: jax 0.10
    # deletes a donated host-local input it has just placed, and the step then fails.)
    out = self._fn(state, self._split(batch), *self._extra)
    if self.batched_out and self.mapping == 'pmap':
      out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    elif self.mapping == 'pmap' and self.spans_processes:
      out = jax.tree.map(self._to_global, out)
    return out

  def abstract_state(self, state):
    """The state's shapes as `put_state` places them: ShapeDtypeStruct leaves with
    state_sharding(). Takes arrays or ShapeDtypeStructs (e.g. from jax.eval_shape)."""
    sharding = self.state_sharding()
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                       sharding=sharding), state)

  def lower(self, state, batch):
    """jax lowering of the mapped function for this batch (cost analysis, compile time).
    The batch's leaves may be arrays or jax.ShapeDtypeStructs (one process: its shapes).

    The state is taken as placed by `put_state` whatever its leaves carry, so that the
    executable is the one a later call with the real state reuses (a leaf without that
    sharding would make the call trace and compile the step a second time).
    """
    return self._fn.lower(self.abstract_state(state), self._split(batch), *self._extra)

  def precompile(self, abstract_state, batch) -> tuple[float, float] | None:
    """Compiles for a state of this shape (jax.ShapeDtypeStruct leaves) before one exists;
    later calls reuse the trace and the executable. Returns the seconds spent tracing and
    lowering (Python; no cache skips it) and compiling (or loading from the persistent
    cache), or None where that is not possible (pmap over several processes takes
    concrete arrays only; it compiles at its first call instead)."""
    if self.mapping == 'pmap' and self.spans_processes:
      return None
    start = time.perf_counter()
    lowered = self.lower(abstract_state, batch)
    traced = time.perf_counter()
    lowered.compile()
    return traced - start, time.perf_counter() - traced


def fetch(tree):
  """Device values -> host numpy (blocks); used for metrics only every N steps."""
  return jax.tree.map(np.asarray, jax.device_get(tree))
