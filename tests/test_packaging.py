"""What installing p2p_jax brings: no TensorFlow (a machine that has one keeps it alone)."""

import configparser
import os
import re

from conftest import ROOT


def _requirements(section='options', key='install_requires'):
  parser = configparser.ConfigParser()
  parser.read(os.path.join(ROOT, 'setup.cfg'))
  lines = parser[section][key].splitlines()
  return [l.strip() for l in lines if l.strip() and not l.strip().startswith('#')]


def test_installing_p2p_jax_never_installs_a_tensorflow():
  """tensorflow and tensorflow-cpu are separate distributions of the same package folder:
  requiring either installs a second TensorFlow over a preinstalled one (Colab). Training,
  evaluation and translation need none; the export has its own extra."""
  names = [re.split(r'[<>=!~ ;\[]', r)[0].lower() for r in _requirements()]
  assert not [n for n in names if n.startswith('tensorflow') and n != 'tensorflow-datasets']
  assert 'tensorboard' in names  # the README's `tensorboard --logdir` works after install
  export = _requirements('options.extras_require', 'export')
  assert any(r.startswith('tensorflow') for r in export)
