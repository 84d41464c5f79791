"""Demo: configs/pix2pixhd_demo.py plus pix2pix's L1 term (lambda 100); a CPU run.

pix2pixHD's objective is the GAN loss, D's feature matching and the VGG19 perceptual loss;
the last is the one that ties each output to its target's content, and the CPU demo runs
without it (torchvision's weights are never downloaded by p2p_jax). Trained on GAN +
feature matching alone, the demo's G puts land, sea and snow where they are, under a
texture of dots on the pixel grid that nothing in that objective penalises (README
"Results"). This config adds the term pix2pix uses for that, lambda_l1 |G(x) - y| with
lambda_l1 = 100, and nothing else: same networks, data, schedule and steps. It is NOT the
official objective (pix2pixhd.lambda_l1 is 0 there); with the VGG19 weights,
`configs/pix2pixhd_demo.py --config.pix2pixhd.vgg_loss=True` is the faithful run.

Command (from the repository root):
  python -m p2p_jax.main --config=configs/pix2pixhd_demo_l1.py --workdir=/tmp/p2p_hd_demo_l1
  python -m p2p_jax.evaluate --workdir=/tmp/p2p_hd_demo_l1 --split=test

Runtime: 1,700 steps, 7 min on an idle 2-vCPU machine. Result: test L1 0.206, PSNR 18.8,
better than the best trivial baseline on all 16 test tiles (README "Results").
"""

import os

from p2p_jax import config_schema


def get_config():
  """configs/pix2pixhd_demo.py with an L1 term of weight 100 in G's loss."""
  config = config_schema.load_file(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pix2pixhd_demo.py'))
  config.pix2pixhd.lambda_l1 = 100.0  # pix2pix's lambda; 0 in the official objective
  return config
