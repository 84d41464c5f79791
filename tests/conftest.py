"""Test set-up: 8 fake CPU devices (before jax is imported) and tiny configs."""

import os
import sys

# Must happen before the first `import jax` anywhere in the test session.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# TensorFlow (input pipeline tests) must not grab the CPUs' memory or spam the log.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)  # so `from configs import ...` works as it does for main.py

import pytest  # pylint: disable=g-import-not-at-top


def tiny_config(generator: str = 'unet_32', width: int = 4):
  """configs/default.py shrunk to a 32 px U-Net and a narrow D: compiles in seconds."""
  from configs import default  # pylint: disable=import-outside-toplevel
  config = default.get_config()
  config.model.generator = generator
  config.model.ngf = width
  config.model.ndf = width
  config.model.d_layers = 2
  config.data.load_size = 36
  config.data.crop_size = 32
  return config


@pytest.fixture
def config():
  return tiny_config()
