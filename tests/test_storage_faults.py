"""When the storage under a run fails: the run stops at once, in one line, and loses nothing.

Each case trains the tiny model of tests/test_train.py in this process and breaks its
storage at a chosen step: the checkpoint folder replaced by a file, a save that fails in
Orbax's background thread, a disk that fills (a small tmpfs), the workdir deleted; and a
read-only workdir is refused before training. The run must end at the next step boundary with a
CheckpointError of one line that names the folder and the cause (main.py prints it as one
`p2p_jax:` line and exits 1; the last test checks that on a real process), never hang,
never train on past a lost save, and leave the checkpoints it had intact: where the
storage comes back, the same command resumes bit-identically.

The tmpfs cases need `mount` (root, as in CI); elsewhere they are skipped, and the others,
which break the storage without it, still run.
"""

import contextlib
import errno
import os
import shutil
import subprocess
import threading
import time

import pytest

from p2p_jax import checkpoint_files, checkpointing, train_logging, workdirs
from test_kill_resume import Run
from test_train import (assert_bit_equal, make_config, reference, run,  # noqa: F401
                        steps_on_disk)


@contextlib.contextmanager
def tmpfs(path, size: str):
  """A tmpfs of `size` mounted at `path`; skips the test where mounting is not allowed."""
  os.makedirs(path)
  result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, text=True, check=False)
  if result.returncode:
    pytest.skip(f'cannot mount a tmpfs here (needs root): {result.stderr.strip()}')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def remount(path, options: str):
  subprocess.run(['mount', '-o', f'remount,{options}', str(path)], check=True)


def wait_for_step(folder, step):
  deadline = time.monotonic() + 60
  while not (folder / str(step) / '_CHECKPOINT_METADATA').exists():
    assert time.monotonic() < deadline
    time.sleep(0.01)
  time.sleep(0.2)                              # Orbax's finalize thread ends after it


def one_line(error) -> str:
  text = str(error)
  assert '\n' not in text and len(text) < 600, text
  return text


# ---------------------------------------------------------------------------- without mount

def test_checkpoint_folder_replaced_by_a_file_stops_at_the_next_step(tmp_path, reference):
  """The issue's case: `mv W/checkpoints W/x; echo junk > W/checkpoints` while training."""
  folder, moved = tmp_path / 'checkpoints', tmp_path / 'x'
  steps = []

  def replace_at_3(step):
    steps.append(step)
    if step == 3:
      wait_for_step(folder, 2)                 # step 2's save is complete: the next fails
      folder.rename(moved)
      folder.write_text('junk')

  start = time.monotonic()
  with pytest.raises(checkpointing.CheckpointSaveError) as e:
    run(make_config(num_train_steps=12), tmp_path, step_hook=replace_at_3)
  assert time.monotonic() - start < 120       # no 5-minute wait on Orbax's signals
  assert steps[-1] == 3                        # not one step after it
  assert one_line(e.value) == (f'{folder} is no longer a folder (replaced by a file while '
                               'training): no checkpoint can be saved there. Stopped; the '
                               'newest checkpoint was step 2')
  assert folder.read_text() == 'junk'          # nothing written over it
  # Put back, the checkpoints resume the run as if nothing had happened.
  folder.unlink()
  moved.rename(folder)
  assert_bit_equal(run(make_config(), tmp_path), reference[1])


class _FullDisk:
  """An Orbax commit future whose write fails as a disk that fills up would."""

  def __init__(self, steps, failed_at):
    self.steps, self.failed_at = steps, failed_at

  def result(self, timeout=None):
    del timeout
    time.sleep(0.2)
    self.failed_at.append(self.steps[-1])
    raise OSError(errno.ENOSPC, 'No space left on device')


def test_a_save_failing_in_the_background_stops_the_run(tmp_path, monkeypatch, reference):
  handler = checkpointing.ocp.handlers.PyTreeCheckpointHandler
  real_async_save = handler.async_save
  steps, failed_at = [], []

  async def async_save(self, directory, *args, **kwargs):
    futures = await real_async_save(self, directory, *args, **kwargs)
    if steps and steps[-1] == 4:  # the save of step 4 fails, after it started
      futures = [*(futures or []), _FullDisk(steps, failed_at)]
    return futures

  monkeypatch.setattr(handler, 'async_save', async_save)
  with pytest.raises(checkpointing.CheckpointSaveError) as e:
    run(make_config(num_train_steps=200), tmp_path, step_hook=steps.append)
  message = one_line(e.value)
  assert message.startswith(f'saving step 4 into {tmp_path / "checkpoints"} failed: no space '
                            'left on the device (the checkpoint needs about 811 KiB; ')
  assert message.endswith('Stopped; the newest checkpoint is step 2: fix the cause and run '
                          'the same command to resume')
  # Stopped at the first step boundary after the failure was known, long before step 200.
  assert failed_at and steps[-1] <= failed_at[0] + 2, (failed_at, steps[-1])
  assert steps_on_disk(tmp_path) == [2]        # nothing saved past the lost one
  monkeypatch.undo()
  assert_bit_equal(run(make_config(), tmp_path), reference[1])


def test_a_deleted_workdir_is_named_as_gone(tmp_path):
  workdir = tmp_path / 'run'
  steps = []

  def delete_at_3(step):
    steps.append(step)
    if step == 3:
      wait_for_step(workdir / 'checkpoints', 2)
      shutil.rmtree(workdir)

  with pytest.raises(checkpointing.CheckpointError) as e:
    run(make_config(num_train_steps=12), workdir, step_hook=delete_at_3)
  assert steps[-1] == 3
  assert one_line(e.value).startswith(f'the workdir {workdir} is gone (deleted or moved while '
                                      'training): no checkpoint can be saved there. Stopped')
  assert not workdir.exists()                  # not made again by a save or a sample


def test_no_room_for_one_checkpoint_is_refused_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoint_files, 'free_bytes', lambda _: 300 * 1024)
  with pytest.raises(checkpointing.CheckpointSaveError,
                     match=r'checkpoints has 300 KiB free; a checkpoint of this model needs '
                     r'about 811 KiB: free some space or use another --workdir'):
    run(make_config(), tmp_path, step_hook=lambda s: pytest.fail(f'trained step {s}'))
  assert not (tmp_path / 'checkpoints').exists()  # a first run that failed leaves no folder
  assert not (tmp_path / workdirs.LOCK_FILE).exists()


def test_write_failure_says_the_cause_in_words():
  def say(error, needed=None):
    return checkpoint_files.write_failure('/nonexistent-p2p/ckpt', error, needed)

  tensorstore = ValueError('RESOURCE_EXHAUSTED: Error writing "d.params.conv4.bias/0" in OCDBT '
                           'database: Failed to write 23048192 bytes to file 11: No space '
                           "left on device [os_error_code='28'] [tensorstore_spec='{\"a\": 1}']")
  # The folder is checked first: here it does not exist at all.
  assert say(tensorstore) == ('the workdir /nonexistent-p2p is gone (deleted or moved while '
                              'training)')
  here = os.path.dirname(os.path.abspath(__file__))
  say = lambda error, needed=None: checkpoint_files.write_failure(here, error, needed)
  assert say(tensorstore, 48 * 2**20).startswith(
      'no space left on the device (the checkpoint needs about 48.0 MiB; ')
  assert say(OSError(errno.EROFS, 'Read-only file system')) == 'the file system is read-only'
  assert say(PermissionError(errno.EACCES, 'denied')) == 'permission denied'
  wrapped = RuntimeError('commit failed')
  wrapped.__cause__ = OSError(errno.EDQUOT, 'quota')
  assert say(wrapped).startswith('the disk quota is exceeded')
  assert say(ValueError('odd [tensorstore_spec=\'{"x": 1}\']')) == 'ValueError: odd'


# ---------------------------------------------------------------------------- with a tmpfs

def test_a_full_disk_stops_at_the_save_that_does_not_fit(tmp_path, reference, caplog):
  with tmpfs(tmp_path / 'disk', '1600k') as disk:
    workdir = disk / 'run'
    with pytest.raises(checkpointing.CheckpointSaveError) as e:
      run(make_config(), workdir)
    assert 'Short of disk space' in caplog.text  # said before the first save
    message = one_line(e.value)
    assert message.startswith(f'saving step 4 into {workdir / "checkpoints"} failed: no space '
                              'left on the device (the checkpoint needs about 811 KiB; ')
    assert 'KiB free there). Stopped; the newest checkpoint is step 2' in message
    assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']
    remount(disk, 'size=8m')                     # space freed: the same run resumes
    assert_bit_equal(run(make_config(), workdir), reference[1])


def test_a_disk_that_fills_during_the_write(tmp_path, monkeypatch, capfd):
  """Free space unknown (as on some network file systems): the save starts, TensorStore's
  write fails in the background, and the run stops with the cause, without the hundreds of
  orphaned-task tracebacks such a failure leaves."""
  monkeypatch.setattr(checkpoint_files, 'free_bytes', lambda _: None)
  with tmpfs(tmp_path / 'disk', '1600k') as disk:
    workdir = disk / 'run'
    with pytest.raises(checkpointing.CheckpointSaveError) as e:
      run(make_config(num_train_steps=200), workdir)
    assert one_line(e.value).startswith(
        f'saving step 4 into {workdir / "checkpoints"} failed: no space left on the device '
        '(the checkpoint needs about 811 KiB). Stopped; the newest checkpoint is step 2')
    assert steps_on_disk(workdir) == [2]
  err = capfd.readouterr().err
  assert 'Traceback' not in err and 'never retrieved' not in err, err[-3000:]


def test_a_read_only_workdir_is_refused_before_anything(tmp_path, caplog):
  """(A file system cannot be remounted read-only under a running trainer here: its open
  files make the remount fail; EROFS met while training reads 'the file system is
  read-only', test_write_failure_says_the_cause_in_words.)"""
  with tmpfs(tmp_path / 'disk', '8m') as disk:
    (disk / 'run').mkdir()
    remount(disk, 'ro')
    with pytest.raises(checkpointing.CheckpointError) as e:
      run(make_config(), disk / 'run', step_hook=lambda s: pytest.fail(f'trained step {s}'))
    assert one_line(e.value) == (f'{disk}/run/checkpoints is not writable: [Errno 30] '
                                 f"Read-only file system: '{disk}/run/checkpoints'")


# ---------------------------------------------------------------------------- the command

def test_the_command_says_it_in_one_line_and_exits_1(tmp_path, blue_marble_data_dir):
  workdir = tmp_path / 'run'
  run_ = Run(workdir, blue_marble_data_dir)
  assert run_.wait_for(r'step 3/8')
  wait_for_step(workdir / 'checkpoints', 2)
  (workdir / 'checkpoints').rename(workdir / 'x')
  (workdir / 'checkpoints').write_text('junk')
  replaced = time.monotonic()
  assert run_.finish(timeout=120) == 1
  assert time.monotonic() - replaced < 60
  assert 'Traceback' not in run_.output and 'Error' not in run_.output.replace(
      'CheckpointSaveError', ''), run_.output
  last = run_.lines[-1]
  assert last.startswith('p2p_jax: CheckpointSaveError: '), run_.output
  assert (f'{workdir}/checkpoints is no longer a folder (replaced by a file while training)'
          in last), run_.output


def test_a_tensorboard_writer_thread_dying_of_a_full_disk_is_an_error_not_a_hang(tmp_path):
  """tensorboardX writes events from threads of its own: one that meets a full disk dies
  (its traceback printed), and its bounded queue, no longer read, made the next
  add_scalars block for ever (seen by hand on a 1 MB tmpfs). Its error is now raised in the
  trainer's thread at the next write, and closing does not touch the full disk again."""
  with tmpfs(tmp_path / 'disk', '1m') as disk:
    writer = train_logging.Writer(str(disk / 'run'))
    writer._log.append = lambda *args: None   # only the event files meet the full disk
    with open(disk / 'filler', 'wb') as f:
      try:
        f.write(b'\0' * shutil.disk_usage(disk).free)
      except OSError:
        pass
    errors = []

    def log():
      try:
        for step in range(200_000):
          writer.scalars(step, {'G_L1': 1.0, 'D_real': 0.5})
      except OSError as e:
        errors.append(e)
    thread = threading.Thread(target=log, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), 'add_scalar blocked on a dead writer thread'
    assert errors and errors[0].errno == errno.ENOSPC, errors
    closing = threading.Thread(target=writer.close, daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive()
