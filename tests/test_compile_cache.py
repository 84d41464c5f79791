"""The persistent compilation cache: where it goes, when it is off, and that it is used."""

import os
import subprocess
import sys

from p2p_jax import compile_cache

_COMPILE = ('import sys; from p2p_jax import compile_cache; '
            'folder = compile_cache.enable(sys.argv[1]); import jax; '
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0); "
            'jax.jit(lambda x: x * 2 + 1)(1.0).block_until_ready(); print(folder)')


def _run(arg, env_extra=None):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update(env_extra or {})
  return subprocess.run([sys.executable, '-c', _COMPILE, arg], env=env, capture_output=True,
                        text=True, check=True, timeout=120).stdout.strip()


def test_compiled_programs_are_written_under_a_folder_per_machine(tmp_path):
  folder = _run(str(tmp_path))
  assert folder == os.path.join(str(tmp_path), 'xla', compile_cache.machine_key())
  assert os.listdir(folder), 'nothing was cached'
  assert _run('none') == 'None'  # off
  assert _run('', {compile_cache.ENV_ROOT: 'none'}) == 'None'


def test_another_processor_or_jax_gets_another_folder(monkeypatch):
  key = compile_cache.machine_key()
  assert 'jax' in key and key.endswith(compile_cache._cpu_fingerprint())
  monkeypatch.setattr(compile_cache, '_cpu_fingerprint', lambda: 'other-cpu')
  assert compile_cache.machine_key() != key


def test_default_root_follows_xdg(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV_ROOT, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert compile_cache.cache_root() == os.path.join(str(tmp_path), 'p2p_jax')
  monkeypatch.setenv(compile_cache.ENV_ROOT, 'rel/dir')
  assert compile_cache.cache_root() == os.path.abspath('rel/dir')


def test_a_folder_set_by_hand_wins(monkeypatch):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', '/some/where')
  assert compile_cache.enable('/elsewhere') == '/some/where'
