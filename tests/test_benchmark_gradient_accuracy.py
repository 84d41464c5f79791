"""benchmarks/gradient_accuracy.py, the evidence behind Winograd's place in CPU 'auto': with
the float32 run's activation slopes replayed into float64, what is left must be rounding.
Run as a subprocess: the script turns on float64 for its whole process."""

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def test_matched_slopes_leave_only_rounding():
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS='')  # one CPU device is enough
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'benchmarks', 'gradient_accuracy.py'), '--net', 'D',
       '--batch', '2', '--image-size', '32', '--impls', 'xla,winograd'],
      env=env, capture_output=True, text=True, timeout=600, check=True).stdout
  lines = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
  assert [line['conv_impl'] for line in lines] == ['xla', 'winograd']
  for line in lines:
    # Replayed slopes in the wrong order or at the wrong layer give differences of order 1.
    assert line['matched_max_rel'] < 1e-4, line
