"""Test set-up: 8 fake CPU devices (before jax is imported) and tiny configs."""

import atexit
import os
import shutil
import tempfile

# Must happen before the first `import jax` anywhere in the test session.
# XLA:CPU's backend optimisation costs seconds per program (about 3.5 s for each
# jax.random.normal) and buys nothing for tiny test programs; level 0 compiles ~3x faster.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Compilation dominates the suite's time, and many tests build the same tiny networks: a
# compilation cache shared by the whole run (and by the subprocesses tests start) compiles
# each program once. It starts empty every run, so no result depends on an earlier one.
# pytest-xdist's workers (the README's `-n 2`) start after this ran in the main process, so
# they inherit and share it; JAX writes entries in place, and an entry read while another
# process writes it fails to decompress, which JAX answers with a warning and a compile.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='p2p_jax_test_xla_cache.')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '-1'
# TensorFlow (input pipeline tests) must not grab the CPUs' memory or spam the log.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Datasets are prepared in the test process (and the commands it starts), not in a child
# process each (a Python start per preparation); tests/test_prepare_child.py tests that.
os.environ.setdefault('P2P_JAX_PREPARE_IN_PROCESS', '1')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import pytest  # pylint: disable=g-import-not-at-top


def tiny_config(generator: str = 'unet_32', width: int = 4):
  """The paper's config shrunk to a 32 px U-Net and a narrow D: compiles in seconds."""
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
  config = config_schema.get_config()
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


@pytest.fixture(autouse=True, scope='module')
def release_compiled_programs():
  """After each test module, JAX's in-memory caches go (later modules load what they need
  from the session's persistent cache). Every XLA:CPU executable keeps its code mapped, so
  one process running the whole suite kept gaining memory mappings (6,400 after the CycleGAN
  training tests alone; 820 once cleared) until, near the kernel's vm.max_map_count (65,530),
  XLA crashed serialising an executable (SIGSEGV / SIGABRT in the compilation cache, three
  full runs out of three at 500-odd tests)."""
  yield
  import gc  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  jax.clear_caches()
  gc.collect()


@pytest.fixture(scope='session')
def blue_marble_data_dir(tmp_path_factory):
  """A TFDS data_dir holding the embedded Blue Marble tiles, prepared once per session."""
  from p2p_jax import config_schema  # pylint: disable=import-outside-toplevel
  from p2p_jax.datasets import pix2pix_aligned  # pylint: disable=import-outside-toplevel
  data_dir = tmp_path_factory.mktemp('tfds')
  data = config_schema.get_config().data
  data.dataset, data.data_dir = 'blue_marble', str(data_dir)
  pix2pix_aligned.prepare(data)
  return str(data_dir)
