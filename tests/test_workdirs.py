"""Workdirs: a writable folder is proven before training, not at the first save; one
trainer at a time (the lock)."""

import json
import logging
import os
import re
import socket
import subprocess
import time

import pytest

from p2p_jax import checkpointing as C
from p2p_jax import config_schema, loss_plot, workdirs


def test_check_writable(tmp_path):
  target = tmp_path / 'new' / 'checkpoints'
  workdirs.check_writable(target)
  assert target.is_dir() and not os.listdir(target)          # created, probe removed
  (tmp_path / 'file').write_text('x')
  # Cannot create the directory: named as what is in the way, a file or a link to nothing.
  with pytest.raises(C.CheckpointError, match=f'cannot make {tmp_path / "file" / "ckpt"}: '
                     f'{tmp_path / "file"} is a file, not a folder'):
    workdirs.check_writable(tmp_path / 'file' / 'ckpt')
  with pytest.raises(C.CheckpointError, match=f'^{tmp_path / "file"} is a file, not a folder'):
    workdirs.check_writable(tmp_path / 'file')
  os.symlink(tmp_path / 'gone', tmp_path / 'link')
  with pytest.raises(C.CheckpointError,
                     match=f'{tmp_path / "link"} is a symbolic link to {tmp_path / "gone"}, '
                     'which does not exist'):
    workdirs.check_writable(tmp_path / 'link' / 'checkpoints')
  assert not (tmp_path / 'gone').exists()
  # Every write to the probe file: ENOSPC.
  os.symlink('/dev/full', workdirs._probe_path(workdirs.epath.Path(target)))
  with pytest.raises(C.CheckpointError, match='not writable: .*No space left on device'):
    workdirs.check_writable(target)
  with pytest.raises(C.CheckpointError, match='MiB free'):
    workdirs.check_writable(target, min_free_bytes=2**60)


def test_a_full_disk_leaves_no_temporary_config_or_scalar_log(tmp_path):
  """config.json and scalars.jsonl are rewritten through PATH.tmp: a write that fails for
  space (here every write) leaves the old file and no .tmp."""
  (tmp_path / loss_plot.LOG_FILE).write_text('{"step": 0, "G_L1": 1.0}\n')
  writes = ((workdirs.CONFIG_FILE, lambda: workdirs.save_config(config_schema.get_config(),
                                                                 str(tmp_path))),
            (loss_plot.LOG_FILE, lambda: loss_plot.ScalarLog(str(tmp_path), start_step=0)))
  for name, write in writes:
    os.symlink('/dev/full', tmp_path / f'{name}.tmp')
    with pytest.raises(OSError, match='No space left'):
      write()
    assert os.listdir(tmp_path) == [loss_plot.LOG_FILE]
  assert loss_plot.read_log(str(tmp_path)) == [{'step': 0, 'G_L1': 1.0}]


# ---------------------------------------------------------------------------- the lock

def _owner(lock_file, **fields):
  lock_file.parent.mkdir(parents=True, exist_ok=True)
  lock_file.write_text(json.dumps({'host': socket.gethostname(), 'since': 'then', **fields}))


def _dead_pid():
  """The pid of a process that has exited."""
  process = subprocess.Popen(['true'])
  process.wait()
  return process.pid


def test_a_second_trainer_is_refused_naming_the_first(tmp_path):
  with workdirs.TrainerLock(tmp_path / 'run') as first:
    owner = json.loads((tmp_path / 'run' / 'trainer.lock').read_text())
    assert owner['pid'] == os.getpid() and owner['host'] == socket.gethostname()
    with pytest.raises(workdirs.WorkdirLockedError,
                       match=rf'in use by another trainer: pid {os.getpid()} on host '
                       rf'{re.escape(socket.gethostname())}'):
      workdirs.TrainerLock(tmp_path / 'run').acquire()
    assert isinstance(workdirs.WorkdirLockedError('x'), ValueError)  # one line in main
  assert not (tmp_path / 'run' / 'trainer.lock').exists()            # released: deleted
  workdirs.TrainerLock(tmp_path / 'run').acquire().release()           # and free again
  del first


def test_a_lock_won_on_a_file_its_owner_deleted_is_taken_again(tmp_path, monkeypatch):
  """A trainer that opened the lock file just before its owner released (deleted) it wins
  the flock on a file no one else sees: it must lock the file that is there now instead."""
  lock = workdirs.TrainerLock(tmp_path)
  real_flock, calls = workdirs.fcntl.flock, []

  def flock_after_the_owner_left(fd, op):
    calls.append(fd)
    if len(calls) == 1:                     # the owner deletes the file, another makes it
      os.unlink(lock.path)
      with open(lock.path, 'w'):
        pass
    return real_flock(fd, op)

  monkeypatch.setattr(workdirs.fcntl, 'flock', flock_after_the_owner_left)
  with lock:
    assert len(calls) == 2                  # tried again on the new file
    # pylint: disable-next=protected-access
    assert os.fstat(lock._fd).st_ino == os.stat(lock.path).st_ino
    assert json.loads(open(lock.path).read())['pid'] == os.getpid()
  assert not os.path.exists(lock.path)


def test_the_lock_of_a_trainer_that_is_gone_is_taken_over(tmp_path, caplog):
  lock_file = tmp_path / 'trainer.lock'
  # Same host: its pid no longer runs (a crash or SIGKILL leaves the file behind).
  _owner(lock_file, pid=_dead_pid())
  with caplog.at_level(logging.WARNING):
    with workdirs.TrainerLock(tmp_path):
      assert json.loads(lock_file.read_text())['pid'] == os.getpid()
  assert 'stale lock' in caplog.text
  # The pid runs, but it is another process than the one that locked (pid reused).
  _owner(lock_file, pid=os.getpid(), start_time='1')
  with workdirs.TrainerLock(tmp_path):
    pass


def test_another_hosts_lock_is_stale_only_without_heartbeat(tmp_path, caplog):
  lock_file = tmp_path / 'trainer.lock'
  _owner(lock_file, host='elsewhere', pid=1)                     # touched just now
  with pytest.raises(workdirs.WorkdirLockedError, match='pid 1 on host elsewhere'):
    workdirs.TrainerLock(tmp_path, stale_after_s=60).acquire()
  old = time.time() - 120
  os.utime(lock_file, (old, old))                                  # no heartbeat for 2 min
  with caplog.at_level(logging.WARNING):
    with workdirs.TrainerLock(tmp_path, stale_after_s=60, heartbeat_s=0.05):
      time.sleep(0.3)
      assert time.time() - os.stat(lock_file).st_mtime < 1        # its own heartbeat
  assert 'host elsewhere' in caplog.text
