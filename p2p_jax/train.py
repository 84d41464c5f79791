"""pix2pix training loop: `train_and_evaluate(config, workdir)`, importable from notebooks.

Read top to bottom: set-up (config, devices, data), state (init or resume), the loop
(train step, then periodic logging, samples, validation and checkpoints), and the end.
Metrics stay on the device between log steps, so logging does not stall the step.

Resuming is exact: the state holds the step, both networks, their optimisers and the
dropout key; the data stream is deterministic for a seed and restarts at the batch after
the checkpoint. A run stopped by SIGTERM or Ctrl-C saves a checkpoint at the step it had
reached and returns; running the same command again continues it.
"""

import logging
import signal
import threading
import time
from typing import Callable, Iterable, Iterator

import jax
import numpy as np

from p2p_jax import (checkpointing, config_schema, evaluation, host_memory, inference,
                     input_pipeline, networks, parallel, state as state_lib, train_logging,
                     train_step, workdirs)


class NonFiniteLossError(FloatingPointError):
  """A loss became NaN or infinite; the checkpoints on disk are from before it."""


# ================================================================== set-up


class _StopRequest:
  """Turns SIGTERM / SIGINT into a flag checked between steps (main thread only)."""

  def __init__(self):
    self.requested = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # Second Ctrl-C: stop now, without the final checkpoint.
    self.requested = signal.Signals(signum).name
    logging.warning('%s received: stopping after this step and saving a checkpoint',
                    self.requested)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def steps_per_epoch(config, num_train_examples: int) -> int:
  return max(num_train_examples // config.batch_size, 1)


def total_steps(config, num_train_examples: int) -> int:
  """num_train_steps if set, else num_epochs of the train split."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * steps_per_epoch(config, num_train_examples)


def _data_source(config, split, *, train, batch_size, start_batch=0):
  return input_pipeline.numpy_batches(
      config.data, split, batch_size=batch_size, train=train, seed=config.seed,
      in_channels=config.model.in_channels, out_channels=config.model.out_channels,
      start_batch=start_batch)


def _num_examples(config, split):
  return input_pipeline.num_examples(config.data, split, in_channels=config.model.in_channels,
                                     out_channels=config.model.out_channels)


# ================================================================== the run


def train_and_evaluate(config, workdir: str, *,
                       train_batches: Callable[[int], Iterator[dict]] | None = None,
                       eval_batches: Callable[[], Iterable[dict]] | None = None,
                       num_train_examples: int | None = None,
                       step_hook: Callable[[int], None] | None = None,
                       devices=None):
  """Trains pix2pix as `config` says, in `workdir`; returns the final TrainState.

  Resumes from the newest good checkpoint in workdir/checkpoints. The data comes from the
  config's dataset unless given: train_batches(start_batch) -> endless iterator of
  host-local {'input', 'target'} numpy batches; eval_batches() -> one pass of the
  validation split; num_train_examples sizes an epoch. step_hook(step) runs after each
  step (tests use it to interrupt a run). devices: the devices to train on (default: all
  devices of all processes); a run may resume on another number of devices.
  Raises ValueError naming the field for a bad config, before anything is touched.
  """
  config_schema.validate(config)
  parallel.maybe_initialize_distributed(config.distributed)
  devices = parallel.devices(devices)
  local_batch = parallel.local_batch_size(config.batch_size, devices)  # checks divisibility
  workdirs.check_same_model(config, workdir)
  workdirs.check_writable(workdirs.checkpoint_dir(workdir))
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir),
                                  keep=config.keep_checkpoints, keep_best=True) as ckpt:
    # Closed (its pending save finished) however the run ends, set-up errors included.
    return _run(config, workdir, ckpt, devices, local_batch, train_batches, eval_batches,
                num_train_examples, step_hook)


def _run(config, workdir, ckpt, devices, local_batch, train_batches, eval_batches,
         num_train_examples, step_hook):
  """The body of train_and_evaluate, once the workdir and its checkpoints are open."""
  main = parallel.is_main_process()
  if num_train_examples is None:
    num_train_examples = _num_examples(config, config.data.train_split)
  per_epoch = steps_per_epoch(config, num_train_examples)
  n_steps = total_steps(config, num_train_examples)

  # ---------------------------------------------------------------- state
  generator = networks.create_generator(config, parallel.AXIS)
  discriminator = networks.create_discriminator(config, parallel.AXIS)
  tx_g, tx_d, schedule = state_lib.create_optimizers(config, per_epoch)
  step_fn = train_step.make_train_step(generator, discriminator, tx_g, tx_d, config.loss,
                                       schedule, parallel.AXIS)
  runner = parallel.DataParallel(step_fn, config.compute.mapping, devices=devices,
                                 donate=True)
  init = lambda: state_lib.create_train_state(
      jax.random.PRNGKey(config.seed), generator, discriminator, tx_g, tx_d,
      config.data.crop_size)
  abstract = runner.abstract_state(jax.eval_shape(init))
  # Compile the step (and the init) before any state exists and hand the compiler's leftover
  # memory back to the OS, so that it does not stay resident under the state and the step's
  # buffers (1.8 -> 1.4 GB after compile + init at 256 px; benchmarks/README.md). The jitted
  # step reuses this executable.
  resume = ckpt.latest_step() is not None
  compile_start = time.perf_counter()
  make_state = None if resume else jax.jit(init).lower().compile()
  channels = {'input': config.model.in_channels, 'target': config.model.out_channels}
  if runner.precompile(abstract, {k: np.zeros((local_batch, config.data.crop_size,
                                               config.data.crop_size, c), np.float32)
                                  for k, c in channels.items()}):
    host_memory.release_free_memory()
  compile_s = time.perf_counter() - compile_start
  if resume:
    state = ckpt.restore(abstract)
    logging.info('resumed from step %d in %s', int(state.step), workdir)
  else:
    state = runner.put_state(make_state())
  # The init's executable and its freed scratch (~0.3 GB at 256 px) are not needed again.
  del make_state
  host_memory.release_free_memory()
  start = int(state.step)
  if main:
    # Only now: a checkpoint that does not fit the config must leave config.json as it is.
    workdirs.save_config(config, workdir)
    print(f'p2p_jax: {config.model.generator} G ({state_lib.param_count(state.g.params):,} '
          f'params) + {config.model.d_layers}-layer PatchGAN D '
          f'({state_lib.param_count(state.d.params):,}) on {len(devices)} '
          f'{devices[0].platform} device(s); steps {start} -> {n_steps} '
          f'({per_epoch} per epoch, batch {config.batch_size})', flush=True)

  # ---------------------------------------------------------------- data
  if train_batches is None:
    train_batches = lambda start_batch: _data_source(
        config, config.data.train_split, train=True, batch_size=local_batch,
        start_batch=start_batch)
  if eval_batches is None:
    eval_batches = lambda: _data_source(config, config.data.eval_split, train=False,
                                        batch_size=local_batch)
  # Validation runs on this process's devices: it takes local copies of the global state.
  validator = inference.TrainedGenerator.from_state(config, parallel.to_local(state),
                                                    devices=runner.local_devices)
  writer = train_logging.Writer(workdir, enabled=main, config=config, start_step=start)
  progress = train_logging.Progress(start, n_steps, config.batch_size)

  def validate_and_sample(step):
    """Validation L1 and PSNR (means over the images of all processes), and a sample grid
    of the first batch."""
    validator.set_variables(parallel.to_local({'params': state.g.params,
                                               'batch_stats': state.g.batch_stats}), step)
    first = []
    keep_first = lambda i, batch, out, _: first or first.append(
        (batch['input'], out, batch['target']))
    result = evaluation.score(validator, eval_batches(), seed=config.seed,
                              limit=parallel.process_share(config.num_eval_examples),
                              metrics=('l1', 'psnr'), on_batch=keep_first)
    scores = {f'val_{k}': v for k, v in result.items() if k != 'num_images'}
    writer.scalars(step, scores)
    if first:
      writer.samples(step, *first[0], validator.metadata)
    writer.plot()
    host_memory.release_free_memory()  # validation's scratch, before the next step's
    return scores

  # ---------------------------------------------------------------- loop
  pending = []  # (step, device metrics) not yet read back
  last_scores = {}

  def drain(step):
    """Reads pending metrics back; stops the run at the first non-finite one."""
    host = [(s, parallel.fetch(m)) for s, m in pending]
    pending.clear()
    for s, m in host:
      bad = [k for k, v in m.items() if not np.isfinite(v)]
      if bad:
        raise NonFiniteLossError(
            f'non-finite {", ".join(bad)} at step {s}; stopped. The newest checkpoint '
            f'({ckpt.latest_step()}) is from before it; lower optim.lr or check the data')
    if not host:
      return {}
    return {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}

  step = start
  data = iter(train_batches(start))
  stop = None
  try:
    with _StopRequest() as stop:
      while step < n_steps and stop.requested is None:
        batch = next(data)
        state, step_metrics = runner(state, {'input': batch['input'],
                                             'target': batch['target']})
        step += 1
        pending.append((step, step_metrics))
        if step == start + 1 and main:
          jax.block_until_ready(step_metrics)
          print(f'p2p_jax: first step done {train_logging.seconds_since_process_start():.1f} s '
                f'after start (compiling or loading compiled programs: {compile_s:.1f} s)',
                flush=True)
        if step_hook is not None:
          step_hook(step)
        if parallel.process_count() > 1:
          # A signal may reach only some hosts: all stop at the same step, or the others
          # would wait forever in the next collective. Every process takes part each step.
          anyone = parallel.sum_over_processes(np.int32(stop.requested is not None)) > 0
          if anyone and stop.requested is None:
            stop.requested = 'a signal on another host'
        final = step == n_steps or stop.requested is not None
        if step % config.log_every_steps == 0 or final:
          scalars = drain(step)
          rate = progress.rate(step)
          writer.scalars(step, {**scalars, 'img_per_s': rate})
          if main:
            progress.report(step, rate, scalars)
            writer.plot()
        do_ckpt = step % config.checkpoint_every_steps == 0 or final
        if step % config.eval_every_steps == 0 or step % config.sample_every_steps == 0 \
            or do_ckpt:
          last_scores = validate_and_sample(step)
          if main and last_scores:
            print(f'  validation at step {step}: ' + ', '.join(
                f'{k} {v:.4f}' for k, v in last_scores.items()), flush=True)
        if do_ckpt:
          drain(step)  # never save a state whose losses were not finite
          ckpt.save(step, state, last_scores or None)
  finally:
    ckpt.wait()
    writer.close()
  if main and stop is not None and stop.requested:
    print(f'p2p_jax: stopped by {stop.requested} at step {step}; run the same command to '
          'resume', flush=True)
  elif main:
    train_logging.print_summary(workdir, ckpt.latest_step(), ckpt.best_step(),
                                config.data.eval_split)
  return state
