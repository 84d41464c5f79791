"""pix2pixHD's perceptual loss: VGG19 features relu1_1 ... relu5_1 of torchvision's network.

As the official Vgg19 and VGGLoss (NVIDIA/pix2pixHD, models/networks.py): torchvision's
`vgg19(pretrained=True).features` cut after its layers 1, 6, 11, 20 and 29 (relu1_1,
relu2_1, relu3_1, relu4_1, relu5_1), applied to the [-1, 1] images as they are (no ImageNet
normalisation), and

  L_VGG(x, y) = sum_i w_i * mean |VGG_i(x) - VGG_i(y)|,  w = 1/32, 1/16, 1/8, 1/4, 1,

y's features treated as constants; the method multiplies it by lambda_feat (10).

The weights are not parameters of any trained network: they are read once from the
torchvision file (p2p_jax/pytorch/vgg19_weights.py) and handed to the train step as an
argument, {'features.<i>.weight' [O, I, 3, 3], 'features.<i>.bias' [O]} as in the file,
for the 13 convs below.
"""

import jax
import jax.numpy as jnp
import numpy as np

from p2p_jax.models import layers

# torchvision's vgg19().features up to relu5_1: ('conv', index of the conv in `features`),
# 'pool' (MaxPool2d(2, 2)) or 'out' (a feature the loss uses). Every conv is 3x3, padding 1,
# followed by a ReLU.
PROGRAM = (('conv', 0), 'out',
           ('conv', 2), 'pool', ('conv', 5), 'out',
           ('conv', 7), 'pool', ('conv', 10), 'out',
           ('conv', 12), ('conv', 14), ('conv', 16), 'pool', ('conv', 19), 'out',
           ('conv', 21), ('conv', 23), ('conv', 25), 'pool', ('conv', 28), 'out')
# Shapes of the conv weights used, [out, in, 3, 3] as torch stores them.
CONV_SHAPES = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128),
               12: (256, 256), 14: (256, 256), 16: (256, 256), 19: (512, 256),
               21: (512, 512), 23: (512, 512), 25: (512, 512), 28: (512, 512)}
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def weight_shapes() -> dict[str, tuple[int, ...]]:
  """{'features.<i>.weight': (O, I, 3, 3), 'features.<i>.bias': (O,)} of the convs used."""
  out = {}
  for i, (o, c) in CONV_SHAPES.items():
    out[f'features.{i}.weight'] = (o, c, 3, 3)
    out[f'features.{i}.bias'] = (o,)
  return out


def to_kernels(weights: dict) -> dict:
  """The file's tensors as {i: (HWIO kernel, bias)} float32 numpy arrays (host side, once)."""
  return {i: (np.ascontiguousarray(
      np.asarray(weights[f'features.{i}.weight'], np.float32).transpose(2, 3, 1, 0)),
              np.asarray(weights[f'features.{i}.bias'], np.float32))
          for i in CONV_SHAPES}


def max_pool(x: jax.Array) -> jax.Array:
  """MaxPool2d(2, 2) on NHWC (odd rows and columns dropped), whose gradient goes to the
  first maximum of each window in row-major order, as torch's kernels route it. Ties are
  common here: label maps are constant over regions, so are the generator's outputs and
  their features there; XLA's pooling gradient would pick another of the tied pixels
  (a subgradient as valid, but not the official one)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  windows = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  windows = windows.reshape(n, h // 2, w // 2, 4, c)
  first = jnp.argmax(jax.lax.stop_gradient(windows), axis=3)  # the first maximum
  return jnp.take_along_axis(windows, first[:, :, :, None], axis=3)[:, :, :, 0]


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """mean |a - b| with torch's gradient, sign(a - b), 0 where they are equal (jnp.abs's
  is 1 there)."""
  d = a - b
  return jnp.mean(d * jax.lax.stop_gradient(jnp.sign(d)))


def features(kernels: dict, x: jax.Array, *, conv=layers.conv2d, dtype=jnp.float32):
  """The five relu outputs for images x [N, H, W, 3] (NHWC, as they are: [-1, 1]).

  kernels: `to_kernels` of the weights. conv: computes conv2d(x, kernel, stride, padding)
  (a form of p2p_jax.kernels). Returns a list of 5 arrays.
  """
  outs, h = [], x.astype(dtype)
  for op in PROGRAM:
    if op == 'out':
      outs.append(h)
    elif op == 'pool':
      h = max_pool(h)
    else:
      kernel, bias = kernels[op[1]]
      h = jax.nn.relu(conv(h, kernel.astype(dtype), 1, 1) + bias.astype(dtype))
  return outs


def perceptual_loss(kernels: dict, x: jax.Array, y: jax.Array, *, conv=layers.conv2d,
                    dtype=jnp.float32) -> jax.Array:
  """sum_i w_i mean |VGG_i(x) - VGG_i(y)| with y's features held constant (float32).

  x and y go through VGG19 separately: y's pass is outside the differentiation (nothing of
  it is kept for the backward pass), which at 2048x1024 halves the VGG term's share of the
  step's memory (benchmarks/README.md, pix2pixHD memory); the arithmetic per image is the
  same as one pass over both."""
  fxs = features(kernels, x, conv=conv, dtype=dtype)
  fys = features(kernels, jax.lax.stop_gradient(y), conv=conv, dtype=dtype)
  total = jnp.zeros((), jnp.float32)
  for w, fx, fy in zip(LAYER_WEIGHTS, fxs, fys):
    total = total + w * l1(fx.astype(jnp.float32), fy.astype(jnp.float32))
  return total
