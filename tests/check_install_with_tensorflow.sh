#!/usr/bin/env bash
# Installing p2p_jax where TensorFlow is already installed (as on Colab) must leave that one
# TensorFlow alone: no second distribution (tensorflow-cpu) over the same package folder.
# Slow (downloads TensorFlow), so not part of the pytest suite; tests/test_packaging.py checks
# the requirements it relies on. Run from anywhere:  bash tests/check_install_with_tensorflow.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
pip install -q 'tensorflow>=2.16,<2.22'                       # the preinstalled one
before=$(pip list --format=freeze 2>/dev/null | grep -iE '^tensorflow(-cpu|-intel|-macos)?==' || true)
pip install -q -e "$repo"
after=$(pip list --format=freeze 2>/dev/null | grep -iE '^tensorflow(-cpu|-intel|-macos)?==' || true)
echo "TensorFlow distributions before: $before"
echo "TensorFlow distributions after:  $after"
[ "$before" = "$after" ] || { echo "FAIL: installing p2p_jax changed TensorFlow"; exit 1; }
python -c "import tensorflow as tf, p2p_jax.train, p2p_jax.export; print('tensorflow', tf.__version__, 'and p2p_jax import')"
echo "OK: one TensorFlow, untouched"
rm -rf "$(dirname "$venv")"
