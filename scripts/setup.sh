#!/usr/bin/env bash
# Sets up neuroreg_tf in ./.venv: Python packages from PyPI, and the real
# Fashion-MNIST files from Debian's dataset-fashion-mnist package (the demo's
# built-in data), prepared as a tfds dataset. Safe to run again; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"

fashion_mnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [[ ! -f $fashion_mnist ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
  else
    echo "neuroreg_tf: Fashion-MNIST (the demo's data) is not installed and this user cannot" >&2
    echo "install Debian packages. Ask an administrator to run:" >&2
    echo "    sudo apt-get install dataset-fashion-mnist" >&2
    echo "The tests that need it will be skipped; everything else is set up." >&2
  fi
fi

if [[ -f $fashion_mnist ]]; then
  # Prepare it now (about 10 s) rather than inside the first demo or test run.
  TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -m neuroreg_tf.data.prepare --dataset=fashion_mnist
fi
