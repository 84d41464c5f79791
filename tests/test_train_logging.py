"""What a run leaves to look at: curves, TensorBoard (scalars, samples, config), W&B, the
closing summary, and a quiet console."""

import glob
import logging
import os
import shlex

import numpy as np
import pytest

from conftest import tiny_config
from p2p_jax import loss_plot, train_logging


def _images(n=2, size=16, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_curves_survive_a_resume_and_are_drawn(tmp_path):
  workdir = str(tmp_path)
  writer = train_logging.Writer(workdir, config=tiny_config())
  for step in (2, 4, 6):
    writer.scalars(step, {'G_L1': 1.0 / step, 'G_GAN': 0.7, 'D_real': 0.6, 'D_fake': 0.5})
  writer.scalars(4, {'val_l1': 0.3, 'val_psnr': 12.0})
  writer.close()
  # A resume from step 4: what the interrupted run logged after it is dropped.
  resumed = train_logging.Writer(workdir, config=tiny_config(), start_step=4)
  assert [r['step'] for r in loss_plot.read_log(workdir)] == [2, 4, 4]
  resumed.scalars(6, {'G_L1': 0.1})
  path = resumed.plot()
  resumed.close()
  assert path == os.path.join(workdir, loss_plot.PLOT_FILE)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(path) as image:
    pixels = np.asarray(image.convert('RGB'))
  assert image.size == (840, 520)
  # Curves are drawn in colour, not only axes and text.
  assert (np.abs(pixels[..., 0].astype(int) - pixels[..., 2]) > 60).sum() > 200


def test_tensorboard_gets_scalars_samples_and_the_config(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  config = tiny_config()
  writer = train_logging.Writer(str(tmp_path), config=config)
  writer.scalars(2, {'G_L1': 0.5})
  writer.samples(2, _images(), _images(seed=1), _images(seed=2), {})
  writer.scalars(2, {'val_l1': 0.4})
  writer.close()
  runs = {os.path.relpath(os.path.dirname(p), tmp_path / 'tensorboard')
          for p in glob.glob(str(tmp_path / 'tensorboard' / '**' / 'events.*'), recursive=True)}
  main = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard')).Reload()
  assert 'G_L1' in main.Tags()['scalars']
  assert 'samples/input_output_target' in main.Tags()['images']
  assert 'hparams' in runs
  from tensorboard.backend.event_processing import plugin_event_accumulator  # pylint: disable=import-outside-toplevel
  hp = plugin_event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard' / 'hparams'))
  # The config's fields are the run's hyperparameters (hparams plugin data), with the
  # validation scores as its metrics.
  content = b''.join(hp.Reload().PluginTagToContent('hparams').values())
  assert b'model.ngf' in content and b'val_l1' in content


def test_weights_and_biases_logs_offline_when_a_project_is_set(tmp_path, monkeypatch):
  pytest.importorskip('wandb')
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_SILENT', 'true')
  config = tiny_config()
  config.wandb_project = 'p2p-test'
  writer = train_logging.Writer(str(tmp_path), config=config)
  writer.scalars(2, {'G_L1': 0.5})
  writer.samples(2, _images(), _images(seed=1), _images(seed=2), {})
  writer.close()
  runs = glob.glob(str(tmp_path / 'wandb' / 'offline-run-*' / 'run-*.wandb'))
  assert runs and os.path.getsize(runs[0]) > 0


def test_no_wandb_without_a_project(tmp_path):
  train_logging.Writer(str(tmp_path), config=tiny_config()).close()
  assert not os.path.exists(tmp_path / 'wandb')


def test_the_summary_says_where_things_are_and_what_to_run(tmp_path, capsys):
  (tmp_path / 'samples').mkdir()
  (tmp_path / 'samples' / 'step_0000010.png').write_bytes(b'')
  train_logging.print_summary(str(tmp_path), latest=10, best=8, split='test')
  out = capsys.readouterr().out
  assert 'samples/step_0000010.png' in out and 'losses.png' in out and 'best' in out
  assert f'python -m p2p_jax.evaluate --workdir={tmp_path} --checkpoint=best' in out
  assert (f'tensorboard --logdir {tmp_path / "tensorboard"} --samples_per_plugin=images=0'
          in out)                                 # every sample grid, not TensorBoard's 10
  assert 'best 8: the lowest validation L1 of all validations' in out


def test_the_summary_of_an_unpaired_run_names_its_best_metric_and_columns(tmp_path, capsys):
  """CycleGAN on unpaired data: 'best' is the lowest cycle L1, the grids real | translated
  | translated back (not pix2pix's words)."""
  (tmp_path / 'samples').mkdir()
  (tmp_path / 'samples' / 'step_0000010.png').write_bytes(b'')
  train_logging.print_summary(str(tmp_path), latest=10, best=6, split='test',
                              best_metric='val_cycle_l1', caption='real | translated | back')
  out = capsys.readouterr().out
  assert 'best 6: the lowest validation cycle L1 (A -> B -> A and B -> A -> B)' in out
  assert '(real | translated | back, test split; 1 in all)' in out
  assert 'validation L1 of all' not in out and 'input | output | target' not in out


def test_the_summary_quotes_paths_with_spaces(tmp_path, capsys):
  workdir = tmp_path / 'my runs' / "it's"
  workdir.mkdir(parents=True)
  train_logging.print_summary(str(workdir), latest=4, best=None, split='val')
  lines = capsys.readouterr().out.splitlines()
  # Each command, pasted into a shell, passes the workdir as one argument.
  evaluate = shlex.split(next(l for l in lines if 'p2p_jax.evaluate' in l))
  assert evaluate[3:] == [f'--workdir={workdir}', '--checkpoint=latest']
  translate = shlex.split(next(l for l in lines if 'p2p_jax.translate' in l))
  assert translate[3] == f'--workdir={workdir}'
  board = shlex.split(next(l for l in lines if 'tensorboard --logdir' in l))
  assert board[2:4] == ['--logdir', f'{workdir}/tensorboard']


def test_console_drops_library_noise_but_never_errors(caplog):
  train_logging.quiet_console()
  absl_logger = logging.getLogger('absl')
  with caplog.at_level(logging.WARNING, logger='absl'):
    absl_logger.warning('Using custom data configuration: Pix2PixConfig(...)')
    absl_logger.warning('Skipping damaged checkpoint /w/checkpoints/4')
    absl_logger.error('OpenCV is not installed, and this is an error')
  messages = [r.getMessage() for r in caplog.records]
  assert not any('custom data configuration' in m for m in messages)
  assert any('damaged checkpoint' in m for m in messages)
  assert any('OpenCV' in m for m in messages)
