"""Stop requests at any moment end with a finished checkpoint of the last completed step.

In-process runs of the tiny model (tests/test_train.py's helpers) with SIGTERM sent to
this process at chosen moments: during set-up, during a validation, during the final
asynchronous save. A `sentinel` SIGTERM handler stands in for the default action (which
would kill the test process): if it is ever called, the trainer's handler was not installed
at that moment. tests/test_kill_resume.py does the same to a real `python -m p2p_jax.main`.
"""

import os
import shutil
import signal

import pytest

from p2p_jax import checkpointing, stopping, train, workdirs
from test_train import (ONE_DEVICE, assert_bit_equal, eval_batches, make_config,  # noqa: F401
                        reference, run, steps_on_disk, synthetic)


@pytest.fixture
def sentinel():
  """A SIGTERM handler outside the trainer; returns the list of signals it received."""
  received = []
  previous = signal.signal(signal.SIGTERM, lambda signum, _: received.append(signum))
  yield received
  signal.signal(signal.SIGTERM, previous)


def sigterm():
  os.kill(os.getpid(), signal.SIGTERM)


def test_stop_during_validation_saves_the_validated_step(tmp_path, reference, capsys,
                                                         sentinel):
  config = make_config()
  config.eval_every_steps = 1        # a validation at step 1, a checkpoint only at 2 and 4
  calls = []

  def signalling_eval_batches():
    calls.append(1)
    if len(calls) == 1:
      sigterm()                       # arrives while step 1 is being validated
    return eval_batches()

  state = run(config, tmp_path, eval_batches=signalling_eval_batches)
  assert int(state.step) == 1 and steps_on_disk(tmp_path) == [1]
  assert 'stopped by SIGTERM at step 1 (its checkpoint is written)' in capsys.readouterr().out
  assert not sentinel
  state = run(make_config(), tmp_path)
  assert int(state.step) == 4
  assert_bit_equal(state, reference[1])


def test_stop_during_set_up_ends_before_the_first_step(tmp_path, monkeypatch, capsys,
                                                       sentinel):
  real_save_config = workdirs.save_config

  def save_config_then_signal(*args):    # the last thing set-up does before the loop
    real_save_config(*args)
    sigterm()

  def hook(step):
    raise AssertionError(f'trained step {step}')

  monkeypatch.setattr(workdirs, 'save_config', save_config_then_signal)
  outcome = train.run_training(make_config(), str(tmp_path), train_batches=synthetic(),
                               eval_batches=eval_batches, num_train_examples=64,
                               devices=ONE_DEVICE, step_hook=hook)
  assert (outcome.stopped_by, outcome.step) == ('SIGTERM', 0)
  assert stopping.exit_code(outcome.stopped_by) == stopping.EXIT_PREEMPTED
  assert 'stopped by SIGTERM at step 0 (no new step to save)' in capsys.readouterr().out
  assert not sentinel and steps_on_disk(tmp_path) == []


def test_stop_during_the_final_save_waits_for_it(tmp_path, reference, monkeypatch,
                                                 sentinel, caplog):
  real_wait = checkpointing.Checkpointer.wait

  def wait_with_signals(self):
    if self.latest_step() == 4:         # the final save is being written in the background
      sigterm()
      sigterm()                         # a second SIGTERM: ignored, the save goes on
    real_wait(self)

  monkeypatch.setattr(checkpointing.Checkpointer, 'wait', wait_with_signals)
  state = run(make_config(), tmp_path)
  assert not sentinel                   # the default action would have killed the process
  assert int(state.step) == 4 and steps_on_disk(tmp_path) == [2, 4]
  assert 'already stopping' in caplog.text
  assert not [p for p in os.listdir(tmp_path / 'checkpoints') if 'tmp' in p]
  _, saved = workdirs.load_generator_variables(str(tmp_path), 4)
  assert_bit_equal(saved, {'params': reference[1].g.params,
                           'batch_stats': reference[1].g.batch_stats})


def test_an_unfinished_save_is_removed_and_its_step_saved_again(tmp_path, reference, caplog):
  run(make_config(num_train_steps=2), tmp_path)
  # What SIGKILL during the save of step 4 leaves: Orbax's temporary folder, half written.
  unfinished = tmp_path / 'checkpoints' / '4.orbax-checkpoint-tmp'
  shutil.copytree(tmp_path / 'checkpoints' / '2', unfinished)
  os.remove(unfinished / '_CHECKPOINT_METADATA')
  state = run(make_config(), tmp_path)
  assert int(state.step) == 4 and steps_on_disk(tmp_path) == [2, 4]
  assert not unfinished.exists()
  assert 'a save that did not finish' in caplog.text and '4.orbax-checkpoint-tmp' in caplog.text
  assert_bit_equal(state, reference[1])
  assert_bit_equal(workdirs.load_generator_variables(str(tmp_path), 4)[1],
                   workdirs.load_generator_variables(reference[0], 4)[1])
