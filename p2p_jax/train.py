"""The training loop of every method: `train_and_evaluate(config, workdir)`, importable
from notebooks.

The loop knows no method: `config.method` names one (p2p_jax/methods), which supplies its
networks, state, train step and the batches it needs; everything here (devices, resume,
stopping, the non-finite guard, validation, logging, checkpoints) is the same for all.

Read top to bottom: set-up (config, devices, data), state (init or resume), the loop
(train step, then periodic logging, samples, validation and checkpoints), and the end.
Metrics stay on the device between log steps, so logging does not stall the step.

Resuming is exact: the state holds the step, the networks, their optimisers and the
random key (and whatever else the method keeps, e.g. CycleGAN's image pools); the data stream is deterministic for a seed and restarts at the batch after
the checkpoint. A stop request (SIGTERM, Ctrl-C; p2p_jax/stopping.py) at any moment, set-up
and the final save included, ends the run at the step it had completed, with a checkpoint
of that step written before it returns (the command ends at once during set-up: nothing
to save); running the same command again continues it. A save that fails, or a workdir
that vanishes, stops the run at the next step (checkpointing.CheckpointSaveError).

Nothing non-finite is saved: at log steps and before each checkpoint the losses and every
floating-point leaf of the state (parameters, BatchNorm statistics, optimiser moments) are
checked, and validation scores when they are computed; the first NaN or inf stops the run
naming the step, and the newest checkpoint stays the one before it.

Everything that can be checked before the first step is: the config, the devices, both
data splits, that the workdir is writable, holds the same model and no other trainer
(WORKDIR/trainer.lock). Paths may be relative to the current folder.
"""

import dataclasses
import logging
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np

from p2p_jax import (checkpointing, config_schema, evaluation, host_memory, inference,
                     input_pipeline, methods, parallel, state as state_lib, stopping,
                     train_logging, workdirs)


class NonFiniteError(FloatingPointError):
  """A loss, a leaf of the state or a validation score became NaN or infinite; the
  checkpoints on disk are from before it."""


NonFiniteLossError = NonFiniteError  # Its name from when only the losses were checked.


@dataclasses.dataclass
class Outcome:
  """How a run ended: the final state, its step, and the stop request that ended it (the
  signal's name, or None when the run reached its last step)."""
  state: Any
  step: int
  stopped_by: str | None


# ================================================================== set-up


def steps_per_epoch(config, num_train_examples: int) -> int:
  return max(num_train_examples // config.batch_size, 1)


def total_steps(config, num_train_examples: int) -> int:
  """num_train_steps if set, else num_epochs of the train split."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * steps_per_epoch(config, num_train_examples)


def _data_source(config, split, *, train, batch_size, start_batch=0):
  method = methods.get(config)
  return input_pipeline.numpy_batches(
      config.data, split, batch_size=batch_size, train=train, seed=config.seed,
      in_channels=config.model.in_channels, out_channels=config.model.out_channels,
      start_batch=start_batch, data_kind=method.data_kind_for(config),
      **method.pipeline_options(config))


def _num_examples(config, split):
  method = methods.get(config)
  return input_pipeline.num_examples(config.data, split, in_channels=config.model.in_channels,
                                     out_channels=config.model.out_channels,
                                     data_kind=method.data_kind_for(config),
                                     **method.pipeline_options(config))


# ================================================================== the run


def train_and_evaluate(config, workdir: str, *,
                       train_batches: Callable[[int], Iterator[dict]] | None = None,
                       eval_batches: Callable[[], Iterable[dict]] | None = None,
                       num_train_examples: int | None = None,
                       step_hook: Callable[[int], None] | None = None,
                       devices=None):
  """Trains the method `config` names as it says, in `workdir`; returns the final state.

  Resumes from the newest good checkpoint in workdir/checkpoints. The data comes from the
  config's dataset unless given: train_batches(start_batch) -> endless iterator of
  host-local {'input', 'target'} numpy batches; eval_batches() -> one pass of the
  validation split; num_train_examples sizes an epoch. step_hook(step) runs after each
  step (tests use it to interrupt a run). devices: the devices to train on (default: all
  devices of all processes); a run may resume on another number of devices.
  Raises ValueError naming the field for a bad config, before anything is touched;
  `run_training` says in addition whether a stop request ended the run.
  """
  return run_training(config, workdir, train_batches=train_batches,
                      eval_batches=eval_batches, num_train_examples=num_train_examples,
                      step_hook=step_hook, devices=devices).state


def run_training(config, workdir: str, **kwargs) -> Outcome:
  """train_and_evaluate (same arguments), returning how the run ended as well."""
  config_schema.validate(config)
  config = config_schema.with_absolute_paths(config)
  methods.get(config).preflight(config)  # files it needs (pix2pixHD's VGG19), before writing
  workdir = workdirs.absolute_path(workdir)
  parallel.maybe_initialize_distributed(config.distributed)
  devices = parallel.devices(kwargs.pop('devices', None))
  # Checks divisibility (over replicas: groups of compute.spatial devices per image).
  local_batch = parallel.local_batch_size(config.batch_size, devices, config.compute.spatial)
  workdirs.check_same_model(config, workdir)
  # A first run that fails or is stopped before it saves anything leaves none of the
  # folders it made (the workdir, its new parents): they go at the block's end, and at a
  # stop's exit after the lock's release, while empty (a run that wrote anything keeps its
  # workdir). One process only (the others' view of a shared workdir would race with
  # process 0's writes).
  made = stopping.missing_folders(workdir) if parallel.process_count() == 1 else ()
  with stopping.temporary(None, made=made):
    workdirs.check_writable(workdirs.checkpoint_dir(workdir))
    # Validation pairs input and target where the validation data is paired (always for
    # pix2pix; for CycleGAN on a paired dataset read unpaired); the best checkpoint is
    # then the lowest validation L1, else (unpaired data) the lowest cycle L1.
    eval_paired = kwargs.pop('eval_paired', None)
    if eval_paired is None:
      eval_paired = kwargs.get('eval_batches') is not None or workdirs.eval_is_paired(config)
    # The stop request covers everything from here to the last byte of the final
    # checkpoint (the Checkpointer waits for it when it closes); the lock keeps a second
    # trainer out.
    with stopping.StopRequest() as stop, workdirs.trainer_lock(workdir) as lock, \
        checkpointing.Checkpointer(workdirs.checkpoint_dir(workdir),
                                   keep=config.keep_checkpoints, keep_best=True,
                                   best_metric=workdirs.best_metric(eval_paired)) as ckpt:
      stop.on_exit(lock.release)  # a stop during set-up may end the process (the command)
      try:
        return _run(config, workdir, ckpt, stop, devices, local_batch,
                    eval_paired=eval_paired, **kwargs)
      except OSError as e:  # writing a sample or the curves: the workdir gone, a full disk
        workdirs.raise_if_storage_error(workdir, e, ckpt.failure(wait=True))
        raise


def _run(config, workdir, ckpt, stop, devices, local_batch, train_batches=None,
         eval_batches=None, num_train_examples=None, step_hook=None,
         eval_paired=True) -> Outcome:
  """The body of run_training, once the workdir and its checkpoints are open."""
  main = parallel.is_main_process()
  if num_train_examples is None:
    num_train_examples = _num_examples(config, config.data.train_split)
  if eval_batches is None:
    _num_examples(config, config.data.eval_split)  # Missing: found now, not at validation.
  per_epoch = steps_per_epoch(config, num_train_examples)
  n_steps = total_steps(config, num_train_examples)

  # ---------------------------------------------------------------- state
  method = methods.get(config)
  batch_keys = method.batch_keys_for(config)
  setup = method.setup(config, per_epoch, parallel.AXIS)
  # Arrays every step reads but nobody trains (pix2pixHD's VGG19): placed once, not saved.
  constants = setup.constants() if setup.constants is not None else None
  runner = parallel.DataParallel(setup.step, config.compute.mapping, devices=devices,
                                 donate=True, constants=constants,
                                 spatial=config.compute.spatial)
  init = setup.init
  abstract = runner.abstract_state(jax.eval_shape(init))
  ckpt.check_space(abstract)  # not even one checkpoint fits: stop now, not at the first save
  # Compile the step (and the init) before any state exists and hand the compiler's leftover
  # memory back to the OS, so that it does not stay resident under the state and the step's
  # buffers (1.8 -> 1.4 GB after compile + init at 256 px; benchmarks/README.md). The jitted
  # step reuses this executable.
  resume = ckpt.latest_step() is not None
  trace_s = compile_s = 0.0
  make_state = None
  if not resume:
    t0 = time.perf_counter()
    lowered_init = jax.jit(init).lower()
    t1 = time.perf_counter()
    make_state = lowered_init.compile()
    trace_s, compile_s = t1 - t0, time.perf_counter() - t1
  seconds = runner.precompile(abstract, setup.example_batch(local_batch))
  if seconds is not None:
    trace_s, compile_s = trace_s + seconds[0], compile_s + seconds[1]
    host_memory.release_free_memory()
  own_stream = train_batches is None  # the config's pipeline: its stream is described
  stream = input_pipeline.stream_descriptor(config, parallel.process_count())
  saved_with = {'data_stream': stream} if own_stream else {}  # ckpt.save's extra argument
  if resume:
    state = ckpt.restore(abstract)
    logging.info('resumed from step %d in %s', int(state.step), workdir)
    notice = own_stream and input_pipeline.resume_notice(ckpt.data_stream(int(state.step)),
                                                         stream)
    if notice and main:
      print(notice, flush=True)
  else:
    state = make_state()
    if setup.warm_start is not None:  # a new run that starts from another's weights
      state = setup.warm_start(state)
    state = runner.put_state(state)
  # The init's executable and its freed scratch (~0.3 GB at 256 px) are not needed again.
  del make_state
  host_memory.release_free_memory()
  start = int(state.step)
  if main:
    # Only now: a checkpoint that does not fit the config must leave config.json as it is.
    workdirs.save_config(config, workdir)
    print(f'p2p_jax: {method.name}: {method.describe(config, state)} on {len(devices)} '
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
  # One translator per direction the method has (CycleGAN: G_A and G_B).
  translators = {d: inference.TrainedGenerator.from_state(
      config, parallel.to_local(state), devices=runner.local_devices, direction=d)
                 for d in method.directions}
  writer = train_logging.Writer(workdir, enabled=main, config=config, start_step=start)
  progress = train_logging.Progress(start, n_steps, config.batch_size)

  def newest_checkpoint():
    latest = ckpt.latest_step()
    return ('No checkpoint was saved before it' if latest is None else
            f'The newest checkpoint (step {latest}) is from before it')

  caption = ('input | output | target' if 'BtoA' not in translators else
             'real | translated | translated back (A rows, then B rows)')

  def validate_and_sample(step):
    """Validation scores (means over the images of all processes; NaN or inf stops the
    run) and a sample grid of the first batch: L1 and PSNR of input -> output against the
    target where the validation split is paired, and, for a method that translates back,
    the cycle L1 of both domains (rows real | translated | translated back)."""
    local = parallel.to_local(state)
    for translator in translators.values():
      translator.set_state(local, step)
    limit = parallel.process_share(config.num_eval_examples)
    scores, rows = {}, []
    if eval_paired:
      first = []
      keep_first = lambda i, batch, out, _: first or first.append(
          (evaluation.shown_input(translators['AtoB'], batch), out, batch['target']))
      result = evaluation.score(translators['AtoB'], eval_batches(), seed=config.seed,
                                limit=limit, metrics=('l1', 'psnr'), on_batch=keep_first)
      scores.update({f'val_{k}': v for k, v in result.items() if k != 'num_images'})
      rows = first
    if 'BtoA' in translators:
      rows, cycles = [], []
      for key, there, back, domain in (('input', 'AtoB', 'BtoA', 'A'),
                                       ('target', 'BtoA', 'AtoB', 'B')):
        first = []
        result = evaluation.score_cycle(
            translators[there], translators[back], eval_batches(), key=key, limit=limit,
            seed=config.seed,
            on_batch=lambda i, batch, fake, rec, _, key=key: first or first.append(
                (batch[key], fake, rec)))
        if 'cycle_l1' in result:
          scores[f'val_cycle_l1_{domain}'] = result['cycle_l1']
          cycles.append(result['cycle_l1'])
        rows += first
      if cycles:
        scores['val_cycle_l1'] = float(np.mean(cycles))
    bad = {k: v for k, v in scores.items() if not np.isfinite(v)}
    if bad:
      raise NonFiniteError(
          f'validation {", ".join(f"{k} {v}" for k, v in bad.items())} at step {step}; '
          f'stopped without saving it. {newest_checkpoint()}')
    writer.scalars(step, scores)
    if rows:
      # Lists, not arrays: A's rows and B's may differ in channels (grey A, colour B).
      columns = [[image for batch in c for image in batch] for c in zip(*rows)]
      writer.samples(step, *columns, translators['AtoB'].metadata, caption=caption)
    if main and scores:
      print(f'  validation at step {step}: ' + ', '.join(
          f'{k} {v:.4f}' for k, v in scores.items()), flush=True)
    writer.plot()
    host_memory.release_free_memory()  # validation's scratch, before the next step's
    return scores

  # ---------------------------------------------------------------- loop
  pending = []  # (step, device metrics) not yet read back
  checked = [None]  # the step whose state was last found finite

  def drain(step):
    """Reads pending metrics back and checks the state; stops the run at the first
    non-finite loss or state leaf. Returns the metrics' means."""
    host = [(s, parallel.fetch(m)) for s, m in pending]
    pending.clear()
    for s, m in host:
      bad = [k for k, v in m.items() if not np.isfinite(v)]
      if bad:
        raise NonFiniteError(
            f'non-finite {", ".join(bad)} at step {s}; stopped. {newest_checkpoint()}; '
            'lower optim.lr or check the data')
    if checked[0] != step:
      bad = state_lib.nonfinite_leaves(parallel.to_local(state))
      if bad:
        raise NonFiniteError(
            f'non-finite values in the training state at step {step} ({len(bad)} '
            f'arrays, e.g. {", ".join(bad[:3])}); stopped without saving it. '
            f'{newest_checkpoint()}; lower optim.lr')
      checked[0] = step
    if not host:
      return {}
    return {k: float(np.mean([m[k] for _, m in host])) for k in host[-1][1]}

  step = start
  stopped_by = stop.agreed()  # during set-up: nothing new to save
  data = iter(train_batches(start)) if stopped_by is None else None
  waited = [0.0, time.perf_counter()]  # seconds waiting for batches; since (log interval)
  try:
    while step < n_steps and stopped_by is None:
      t0 = time.perf_counter()
      batch = next(data)
      waited[0] += time.perf_counter() - t0
      state, step_metrics = runner(state, {k: batch[k] for k in batch_keys})
      step += 1
      pending.append((step, step_metrics))
      if step == start + 1 and main:
        jax.block_until_ready(step_metrics)
        print(f'p2p_jax: first step done {train_logging.seconds_since_process_start():.1f} s '
              f'after start (tracing {trace_s:.1f} s, compiling or loading compiled '
              f'programs {compile_s:.1f} s)',
              flush=True)
      if step_hook is not None:
        step_hook(step)
      # Every process stops at the same step; a failed save or a vanished workdir stops it.
      stopped_by = stop.agreed(ckpt.failure())
      final = step == n_steps or stopped_by is not None
      save = step % config.checkpoint_every_steps == 0 or final
      if step % config.log_every_steps == 0 or final:
        scalars = drain(step)
        rate = progress.rate(step)
        # The share of the time since the last log spent waiting for data (the first
        # step's includes starting the input pipeline's workers).
        now = time.perf_counter()
        scalars['data_wait'] = waited[0] / max(now - waited[1], 1e-9)
        waited[:] = [0.0, now]
        writer.scalars(step, {**scalars, 'img_per_s': rate})
        if main:
          progress.report(step, rate, scalars)
          writer.plot()
      scores = None
      if stopped_by is None and (step % config.eval_every_steps == 0 or
                                 step % config.sample_every_steps == 0 or save):
        # At a checkpoint step first: a non-finite state is named before validation.
        if save:
          drain(step)
        scores = validate_and_sample(step)
        stopped_by = stop.agreed(ckpt.failure())  # a stop during validation: save this step
        # "best" is the best validated step: a validation that improves on it is saved.
        save = save or stopped_by is not None or ckpt.improves(scores)
      if save:
        drain(step)  # never save a state with a non-finite loss or leaf
        ckpt.save(step, state, scores, **saved_with)
    if hasattr(data, 'close'):
      data.close()  # the input pipeline's workers stop before the final save is awaited
    ckpt.wait()  # the final checkpoint is on disk before the run says it stopped
  finally:
    if hasattr(data, 'close'):
      data.close()
    writer.close()
  if main and stopped_by is not None:
    saved = 'its checkpoint is written' if step > start else 'no new step to save'
    print(f'p2p_jax: stopped by {stopped_by} at step {step} ({saved}); run the same '
          'command to resume', flush=True)
  elif main:
    train_logging.print_summary(workdir, ckpt.latest_step(), ckpt.best_step(),
                                config.data.eval_split,
                                best_metric=workdirs.best_metric(eval_paired), caption=caption,
                                before_translate=tuple(method.commands_before_translate(
                                    config, workdir,
                                    'best' if ckpt.best_step() is not None else 'latest')))
  return Outcome(state, step, stopped_by)
