"""pix2pixHD (Wang, Liu, Zhu, Tao, Kautz, Catanzaro, CVPR 2018): label maps to photos.

As the official code (NVIDIA/pix2pixHD: models/pix2pixHD_model.py, models/networks.py,
train.py, options/); the networks are p2p_jax/models/pix2pixhd.py (GlobalGenerator,
LocalEnhancer), multiscale_d.py (MultiscaleDiscriminator) and feature_encoder.py (E), the
defaults those of its options (configs/pix2pixhd_*.py).

Input (`encode_input`): the one-hot label map (label_nc channels; label_nc 0: the image
itself), plus the instance boundary map (p2p_jax/label_maps.py) unless instance_map is
off; computed on the device from the batch's integer maps. D sees concat(input, image).
With the feature encoder (instance_feat / label_feat), G sees concat(input, E(image, ids)):
E's features of the real photo averaged over each instance (label) of `ids`; E's
parameters sit beside G's in the state (g.params = {'G', 'E'}) and learn from G's loss
under G's Adam, as the official optimizer_G holds netE's parameters too. At inference
(LabelsAndFeaturesToImage) the features are E's of a photo given with each label map
(validation, evaluate; the official --use_encoded_image), or drawn per instance from the
k-means clusters of encode_features (translate; the official test.py's default).

One iteration, as the official train.py (one forward, both updates from it, at the
parameters before either update):
  fake = G(input)               [G(concat(input, E(image, ids))) with the feature encoder]
  G loss  sum_scales GAN(D(input, fake)[s][-1], real)
          + sum_s sum_{j < last} (1/num_D)(4/(n_layers_D + 1)) lambda_feat
              |D(input, fake)[s][j] - D(input, image)[s][j]|      (feature matching)
          + lambda_feat sum_i w_i |VGG_i(fake) - VGG_i(image)|      (models/vgg19.py)
          [+ lambda_l1 |fake - image|: not in the official code, off (0) by default]
  D loss  0.5 (sum_s GAN(D(input, fake)[s][-1], fake) + sum_s GAN(D(input, image)[s][-1], real))
GAN is LSGAN (MSE to 1 / 0) by default, BCE with loss.gan_mode 'vanilla' (--no_lsgan; the
official code then appends a Sigmoid that its feature-matching path never applies; here
it is BCE with logits either way). D runs once on the fakes and once on the real images;
one VJP of (G loss, D loss) gives G's gradient (through the fakes, D held) and D's (the
fakes held), which is what the official two backward passes compute (the official code
runs D on the fakes twice, once detached). Adam (beta1 0.5,
beta2 0.999, eps 1e-8) with the learning rate of the state's step (the schedule, e.g.
'linear_decay_pix2pixhd').

Coarse to fine (model.generator 'pix2pixhd_local'): `load_pretrain` names the workdir of a
global run whose generator becomes the local enhancer's global part (and whose D scales
are copied by name) at step 0 (`Setup.warm_start`); for the first niter_fix_global epochs
only the local enhancer (and E) learns (the global part's gradients are zero, which leaves
its weights and Adam moments exactly unchanged, as the official optimiser that does not
hold them), and at the first step after them G's Adam starts afresh over all parameters,
E's included (update_fixed_params). Both depend only on the state's step, so a resumed run switches at
the same step.

The VGG19 weights reach the step as its third argument (`Setup.constants`), read once from
torchvision's file (p2p_jax/pytorch/vgg19_weights.py): neither in the state and its
checkpoints nor constants of the compiled program.
"""

import functools
import logging
import os
import shlex
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from p2p_jax import (checkpointing, feature_clusters, image_io, input_pipeline, kernels,
                     label_maps, losses, networks, parallel, schedules, state as state_lib)
from p2p_jax.methods import base
from p2p_jax.models import vgg19
from p2p_jax.models.pix2pixhd import HD_GENERATORS
from p2p_jax.state import NetState, TrainState


def _hd(config):
  return config.pix2pixhd


def input_keys(config) -> tuple[str, ...]:
  """The batch keys the generator's input is made from."""
  hd = _hd(config)
  return ('label' if hd.label_nc else 'input',) + (('instance',) if hd.instance_map else ())


def encode_input(config, batch: dict) -> jax.Array:
  """The encoded input [N, H, W, C] from a batch (inside the step): what D sees beside the
  image, and G without the feature encoder."""
  hd = _hd(config)
  return label_maps.encode(hd.label_nc, label=batch.get('label'), image=batch.get('input'),
                           instance=batch['instance'] if hd.instance_map else None)


def feature_ids(config, batch: dict) -> jax.Array:
  """The ids E averages its features over: the instance map, or with label_feat the label
  map (the official encode_input's inst_map = label_map)."""
  return batch['label'] if _hd(config).label_feat else batch['instance']


def generator_input(x: jax.Array, features: jax.Array | None) -> jax.Array:
  """G's input: the encoded input, then E's features when the encoder is on."""
  return x if features is None else jnp.concatenate([x, features.astype(x.dtype)], -1)


def create_optimizer(config) -> optax.GradientTransformation:
  """Adam's moments (beta1, beta2, eps 1e-8 as torch.optim.Adam); the step multiplies by
  the learning rate of its own step number, so that a fresh Adam (the coarse-to-fine
  switch) restarts the moments and bias corrections but not the schedule."""
  return optax.scale_by_adam(b1=config.optim.b1, b2=config.optim.b2, eps=1e-8)


def create_train_state(key, generator, discriminator, tx, config,
                       encoder=None) -> TrainState:
  """Step 0: G and D (and E) from independent keys (weights N(0, 0.02), biases PyTorch's
  default), fresh Adam states. g.params = {'G': ...} (+ 'E': ... with the feature
  encoder), d.params = {'D': ...}."""
  kg, kd, kr = jax.random.split(key, 3)
  # Parameter shapes do not depend on the image size: init on the smallest valid one (a
  # 2048x1024 forward would be dead code, but there is no need to trace it either).
  size = 2 * networks.size_multiple(config.model.generator, config)
  x = jnp.zeros((1, size, size, networks.hd_input_channels(config)), jnp.float32)
  y = jnp.zeros((1, size, size, config.model.out_channels), jnp.float32)
  g_in = jnp.zeros((1, size, size, networks.hd_generator_channels(config)), jnp.float32)
  g_params = {'G': generator.init(kg, g_in)['params']}
  if encoder is not None:
    # A key of its own, so that G's and D's are those of a run without the encoder.
    ids = jnp.zeros((1, size, size), jnp.int32)
    g_params['E'] = encoder.init(jax.random.fold_in(key, 3), y, ids)['params']
  d_params = {'D': discriminator.init(kd, jnp.concatenate([x, y], -1))['params']}
  return TrainState(step=jnp.zeros((), jnp.int32),
                    g=NetState(g_params, {}, tx.init(g_params)),
                    d=NetState(d_params, {}, tx.init(d_params)), rng=kr)


def gan_losses(preds: list, target_is_real: bool, mode: str) -> jax.Array:
  """GANLoss of a MultiscaleDiscriminator's output: each scale's last output, summed."""
  return sum(losses.gan_loss(scale[-1], target_is_real, mode) for scale in preds)


def feature_matching(pred_fake: list, pred_real: list, n_layers: int,
                     lambda_feat: float) -> jax.Array:
  """sum over scales and layers but the last of (1/num_D)(4/(n_layers+1)) lambda_feat
  mean |fake feature - real feature|, the real features held constant (L1 with torch's
  gradient at ties, vgg19.l1)."""
  weight = (1.0 / len(pred_fake)) * (4.0 / (n_layers + 1)) * lambda_feat
  total = jnp.zeros((), jnp.float32)
  for fake, real in zip(pred_fake, pred_real):
    for f, r in zip(fake[:-1], real[:-1]):
      total = total + weight * vgg19.l1(f, jax.lax.stop_gradient(r))
  return total


def fix_global_steps(config, steps_per_epoch: int) -> int:
  """Steps during which only the local enhancer trains (0 for a global generator)."""
  if config.model.generator != 'pix2pixhd_local':
    return 0
  return _hd(config).niter_fix_global * steps_per_epoch


def make_train_step(generator, discriminator, tx: optax.GradientTransformation, config,
                    schedule: Callable[[Any], Any], fix_steps: int = 0,
                    axis_name: str = 'batch', encoder=None) -> Callable:
  """Returns train_step(state, batch[, vgg_kernels]) -> (state, metrics) for one replica.

  batch: {'label' [b, H, W] ids (or 'input' [b, H, W, C] in [-1, 1] with label_nc 0),
  'instance' [b, H, W] ids (with instance_map), 'target' [b, H, W, 3] in [-1, 1]}.
  vgg_kernels: models/vgg19.to_kernels of torchvision's weights, when the VGG loss is on.
  """
  hd, mode = _hd(config), config.loss.gan_mode
  n_layers, lambda_feat = config.model.d_layers, hd.lambda_feat
  conv = kernels.convolutions(config.compute.conv_impl).conv2d
  dtype = networks.DTYPES[config.compute.dtype]
  _, pmean, per_replica = base.replica_collectives(axis_name)

  def adam_step(params, grads, opt_state, lr):
    updates, opt_state = tx.update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state

  def train_step(state: TrainState, batch, vgg_kernels=None) -> tuple[TrainState, dict]:
    if hd.vgg_loss and vgg_kernels is None:
      raise ValueError('the VGG loss is on but the step got no VGG19 weights')
    x = encode_input(config, batch)
    y = jnp.asarray(batch['target'], jnp.float32)

    # G's loss needs D's gradient with respect to its input on the fake pair only; D's
    # loss, D's parameter gradients on both pairs. D runs on the two pairs apart, so the
    # backward pass for G's loss is one image per example, not the real pair's zeros too.
    def generate(p):
      features = None if encoder is None else encoder.apply(
          {'params': p['E']}, y, feature_ids(config, batch))
      return generator.apply({'params': p['G']}, generator_input(x, features))

    fake, g_pull_back = jax.vjp(generate, per_replica(state.g.params))

    def objectives(d_params, fake):
      judge = lambda image: discriminator.apply({'params': d_params['D']},
                                                jnp.concatenate([x, image], -1))
      pred_fake, pred_real = judge(fake), judge(y)
      parts = {'G_GAN': gan_losses(pred_fake, True, mode)}
      if hd.feat_match:
        parts['G_GAN_Feat'] = feature_matching(pred_fake, pred_real, n_layers, lambda_feat)
      if hd.vgg_loss:
        parts['G_VGG'] = lambda_feat * vgg19.perceptual_loss(vgg_kernels, fake, y, conv=conv,
                                                             dtype=dtype)
      if hd.lambda_l1:
        parts['G_L1'] = hd.lambda_l1 * losses.reconstruction_loss(fake, y, 'l1')
      parts['D_fake'] = gan_losses(pred_fake, False, mode)
      parts['D_real'] = gan_losses(pred_real, True, mode)
      g_total = sum(v for k, v in parts.items() if k.startswith('G_'))
      d_total = 0.5 * (parts['D_fake'] + parts['D_real'])
      return (g_total, d_total), parts

    (g_total, d_total), pull_back, parts = jax.vjp(
        objectives, per_replica(state.d.params), fake, has_aux=True)
    # Cotangents of per-device losses (under shard_map: marked per device as they are).
    one, zero = per_replica((jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)))
    _, fake_grad = pull_back((one, zero))  # G's loss through the fakes, D held
    g_grads, = g_pull_back(fake_grad)
    d_grads, _ = pull_back((zero, one))    # D's loss, the fakes held
    g_grads, d_grads = pmean(g_grads), pmean(d_grads)

    g_opt = state.g.opt_state
    if fix_steps > 0:
      # Before the switch the global part does not learn: zero gradients leave its weights
      # and its (zero) Adam moments as they are. At the switch G's Adam starts afresh.
      fixing = state.step < fix_steps
      g_grads = {**g_grads, 'G': {k: (jax.tree.map(lambda a: jnp.where(fixing, 0.0, a), v)
                                      if k == 'model' else v)
                                  for k, v in g_grads['G'].items()}}
      fresh = tx.init(state.g.params)
      g_opt = jax.tree.map(lambda new, old: jnp.where(state.step == fix_steps, new, old),
                           fresh, g_opt)
    lr = jnp.asarray(schedule(state.step), jnp.float32)
    g_params, g_opt = adam_step(state.g.params, g_grads, g_opt, lr)
    d_params, d_opt = adam_step(state.d.params, d_grads, state.d.opt_state, lr)
    metrics = {**parts, 'G_total': g_total, 'D_total': d_total, 'lr': lr}
    new_state = state.replace(step=state.step + 1, g=NetState(g_params, {}, g_opt),
                              d=NetState(d_params, {}, d_opt))
    return new_state, pmean(metrics)

  return train_step


class LabelsToImage(nn.Module):
  """The generator as inference runs it: a packed array (label_maps.pack: label ids and
  instance ids as channels, or the image) -> photo; the encoding runs on the device. Its
  variables are the generator's own (shared scope)."""
  generator: nn.Module
  label_nc: int = 35
  instance_map: bool = True
  in_channels: int = 2   # packed channels

  def setup(self):
    nn.share_scope(self, self.generator)

  @property
  def size_multiple(self) -> int:
    return self.generator.size_multiple

  @property
  def out_channels(self) -> int:
    return self.generator.out_channels

  def check_input(self, shape) -> None:
    if len(shape) != 4 or shape[-1] != self.in_channels:
      what = ('label ids' if self.label_nc else 'the image') + (
          ' and instance ids' if self.instance_map else '')
      raise ValueError(f'pix2pixHD\'s generator takes [batch, height, width, '
                       f'{self.in_channels}] ({what}), got {tuple(shape)}')
    self.generator.check_input(tuple(shape[:3]) + (self.generator.in_channels,))

  def __call__(self, x, *, train: bool = False):
    self.check_input(x.shape)
    return self.generator(label_maps.encode_packed(self.label_nc, self.instance_map, x),
                          train=train)


class LabelsAndFeaturesToImage(nn.Module):
  """The generator with the feature encoder as inference runs it: a packed array
  [N, H, W, packed + C], the label map (and instance map) packed as LabelsToImage's, then
  either (given_features False; the official test.py --use_encoded_image) a photo in
  [-1, 1] (C = its channels) whose features E encodes and averages per instance (or
  label), or (given_features True; test.py's default) the feature map itself (C =
  feat_num; e.g. drawn from clusters, p2p_jax/feature_clusters.py) -> the photo G makes of
  the label map with those features. Variables: {'generator': G's, 'encoder': E's}."""
  generator: nn.Module
  encoder: nn.Module
  label_nc: int = 35
  instance_map: bool = True
  label_feat: bool = False
  given_features: bool = False
  in_channels: int = 5   # packed channels + the photo's or the features'

  @property
  def size_multiple(self) -> int:
    return max(self.generator.size_multiple, self.encoder.size_multiple)

  @property
  def out_channels(self) -> int:
    return self.generator.out_channels

  @property
  def _extra(self) -> int:
    return self.encoder.feat_num if self.given_features else self.encoder.in_channels

  def check_input(self, shape) -> None:
    if len(shape) != 4 or shape[-1] != self.in_channels:
      what = 'label ids' + (' and instance ids' if self.instance_map else '') + (
          ', then the feature map' if self.given_features else
          ', then the photo whose features it encodes')
      raise ValueError(f'pix2pixHD\'s generator with the feature encoder takes [batch, '
                       f'height, width, {self.in_channels}] ({what}), got {tuple(shape)}')
    self.encoder.net.check_input(tuple(shape[:3]) + (self.encoder.in_channels,))

  def __call__(self, x, *, train: bool = False):
    self.check_input(x.shape)
    packed, extra = x[..., :-self._extra], x[..., -self._extra:]
    if self.given_features:
      features = extra
    else:
      ids = packed[..., 0] if self.label_feat else packed[..., -1]
      features = self.encoder(extra, jnp.round(ids).astype(jnp.int32))
    encoded = label_maps.encode_packed(self.label_nc, self.instance_map, packed)
    return self.generator(generator_input(encoded, features), train=train)


# ------------------------------------------------------------------ coarse to fine


def _pretrain_config(path: str):
  """The config of the global run load_pretrain names; one-line errors otherwise."""
  from p2p_jax import workdirs  # pylint: disable=import-outside-toplevel  (imports methods)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'config.pix2pixhd.load_pretrain: {path} is not a folder (the '
                            'workdir of a pix2pixhd_global run)')
  return workdirs.load_config(path)


def check_pretrain(config) -> None:
  """load_pretrain names a pix2pixhd_global run whose generator is this local enhancer's
  global part (ngf twice this run's; same input, depth and blocks)."""
  hd = _hd(config)
  saved = _pretrain_config(hd.load_pretrain)
  want = {'method': 'pix2pixhd', 'model.generator': 'pix2pixhd_global',
          'model.ngf': config.model.ngf * 2 ** hd.n_local_enhancers,
          'model.out_channels': config.model.out_channels,
          'pix2pixhd.label_nc': hd.label_nc, 'pix2pixhd.instance_map': hd.instance_map,
          'pix2pixhd.n_downsample_global': hd.n_downsample_global,
          'pix2pixhd.n_blocks_global': hd.n_blocks_global,
          # G's input holds E's features: the same encoder, or none in both.
          **{f'pix2pixhd.{k}': hd[k] for k in _FEATURE_FIELDS[:2]}}
  if networks.uses_features(config):
    want.update({f'pix2pixhd.{k}': hd[k] for k in _FEATURE_FIELDS[2:]})
  for key, value in want.items():
    block, _, field = key.rpartition('.')
    got = saved[block][field] if block else saved[field]
    if got != value:
      raise ValueError(f'config.pix2pixhd.load_pretrain: {hd.load_pretrain} has {key} '
                       f'{got!r}; this local enhancer needs a global run with {value!r}')


def load_pretrained(config, state: TrainState) -> TrainState:
  """The step-0 state with the global run's G as the local enhancer's global part and its
  D's scales copied by name where their shapes fit (the official load_pretrain: a 512p D
  of 2 scales gives a 1024p D of 3 its two coarser scales)."""
  from p2p_jax import workdirs  # pylint: disable=import-outside-toplevel
  path = _hd(config).load_pretrain
  check_pretrain(config)
  with checkpointing.Checkpointer(workdirs.checkpoint_dir(path), read_only=True) as ckpt:
    step, g = ckpt.restore_generator('latest')
    _, d = ckpt.restore_generator(step, network='d')
  global_g = g['params']['G']
  local_g = dict(state.g.params['G'])
  model = {}
  for name, tree in local_g['model'].items():
    given = global_g.get(name)
    want = jax.tree.map(np.shape, tree)
    if given is None or jax.tree.map(np.shape, given) != want:
      raise ValueError(f'config.pix2pixhd.load_pretrain: {path} (step {step}): the global '
                       f'generator\'s {name} does not fit this local enhancer\'s')
    model[name] = jax.tree.map(np.asarray, given)
  local_g['model'] = model
  g_params = {'G': local_g}
  if 'E' in state.g.params:
    # The official load_pretrain loads netE too (check_pretrain: the same encoder).
    g_params['E'] = jax.tree.map(np.asarray, g['params']['E'])
  d_params, copied = dict(state.d.params['D']), []
  for name, tree in d['params']['D'].items():
    if name in d_params and jax.tree.map(np.shape, tree) == jax.tree.map(
        np.shape, d_params[name]):
      d_params[name] = jax.tree.map(np.asarray, tree)
      copied.append(name)
  if parallel.is_main_process():
    print(f'p2p_jax: pix2pixhd: load_pretrain: global generator and D {", ".join(copied)} '
          f'from {path} (step {step})', flush=True)
  return state.replace(g=state.g.replace(params=g_params),
                       d=state.d.replace(params={'D': d_params}))


# ------------------------------------------------------------------ the method


# What fixes the feature encoder (architecture; and a load_pretrain run must match them).
_FEATURE_FIELDS = ('instance_feat', 'label_feat', 'feat_num', 'nef', 'n_downsample_E')


class Pix2PixHD(base.Method):
  """pix2pixHD as a method of the shared trainer (p2p_jax/methods/base.py)."""
  name = 'pix2pixhd'
  data_kind = 'labels'
  batch_keys = ('label', 'instance', 'target')
  _warned = False  # the missing-instance-map warning, once per process

  def data_kind_for(self, config) -> str:
    # label_nc 0 without instances: pairs of images, as pix2pix's.
    hd = _hd(config)
    return 'paired' if not hd.label_nc and not hd.instance_map else 'labels'

  def batch_keys_for(self, config) -> tuple[str, ...]:
    return input_keys(config) + ('target',)

  def pipeline_options(self, config) -> dict[str, Any]:
    hd = _hd(config)
    return {'label_nc': hd.label_nc, 'instance_map': hd.instance_map,
            'size_multiple': networks.size_multiple(config.model.generator, config)}

  def validate(self, config) -> None:
    hd, model = _hd(config), config.model
    if model.generator not in HD_GENERATORS:
      raise ValueError(f'config.model.generator must be one of {list(HD_GENERATORS)} for '
                       f'method pix2pixhd, got {model.generator!r}')
    if model.norm != 'instance':
      raise ValueError(f"config.model.norm must be 'instance' for method pix2pixhd (its "
                       f"default; --norm batch is not implemented), got {model.norm!r}")
    if model.d_layers < 1:
      raise ValueError(f'config.model.d_layers (n_layers_D) must be >= 1 for pix2pixhd, got '
                       f'{model.d_layers}')
    for field in ('num_D', 'n_downsample_global'):
      if hd[field] < 1:
        raise ValueError(f'config.pix2pixhd.{field} must be >= 1, got {hd[field]!r}')
    if model.generator == 'pix2pixhd_local' and hd.n_local_enhancers < 1:
      raise ValueError('config.pix2pixhd.n_local_enhancers must be >= 1 for '
                       'pix2pixhd_local')
    if hd.instance_feat and hd.label_feat:
      raise ValueError('config.pix2pixhd.instance_feat and label_feat: set one (features '
                       'averaged per instance, or per label class)')
    if hd.instance_feat and not hd.instance_map:
      raise ValueError('config.pix2pixhd.instance_feat averages features over instances: it '
                       'needs config.pix2pixhd.instance_map = True (instance maps)')
    if hd.label_feat and not hd.label_nc:
      raise ValueError('config.pix2pixhd.label_feat averages features over label classes: it '
                       'needs label maps (config.pix2pixhd.label_nc > 0)')
    if networks.uses_features(config) and config.compute.spatial > 1:
      # jnp.unique over a split image: untested, so refused rather than assumed.
      raise ValueError('config.compute.spatial > 1 with the feature encoder (pix2pixhd.'
                       'instance_feat / label_feat) is not implemented: use spatial 1')
    if model.generator != 'pix2pixhd_local':
      for field in ('load_pretrain', 'niter_fix_global'):
        if hd[field]:
          raise ValueError(f'config.pix2pixhd.{field} is for model.generator '
                           f"'pix2pixhd_local' (coarse to fine), not {model.generator!r}")
    side = networks.size_multiple(model.generator, config)
    if config.data.crop_size < 2 * side:
      raise ValueError(f'config.data.crop_size ({config.data.crop_size}) must be at least '
                       f'{2 * side} for {model.generator} with these settings')
    mode = config.data.resize_or_crop
    if mode in ('scale_width', 'scale_width_and_crop') and config.data.load_size % side:
      raise ValueError(f'config.data.load_size ({config.data.load_size}) must be a multiple '
                       f'of {side} for {model.generator} with resize_or_crop {mode!r} (the '
                       'width of every image)')

  def preflight(self, config) -> None:
    hd = _hd(config)
    if hd.vgg_loss:
      from p2p_jax.pytorch import vgg19_weights  # pylint: disable=import-outside-toplevel
      vgg19_weights.check_exists(hd.vgg_weights)
    if hd.load_pretrain:
      check_pretrain(config)

  def architecture(self, config) -> dict[str, Any]:
    hd = _hd(config)
    fields = {f'model.{k}': config.model[k]
              for k in ('generator', 'ngf', 'ndf', 'd_layers', 'out_channels', 'norm')}
    if not hd.label_nc:
      fields['model.in_channels'] = config.model.in_channels
    for k in ('label_nc', 'instance_map', 'n_downsample_global', 'n_blocks_global', 'num_D'):
      fields[f'pix2pixhd.{k}'] = hd[k]
    if config.model.generator == 'pix2pixhd_local':
      for k in ('n_local_enhancers', 'n_blocks_local'):
        fields[f'pix2pixhd.{k}'] = hd[k]
    for k in _FEATURE_FIELDS if networks.uses_features(config) else ():
      fields[f'pix2pixhd.{k}'] = hd[k]
    return fields

  def setup(self, config, steps_per_epoch: int, axis_name: str) -> base.Setup:
    hd = _hd(config)
    generator = networks.create_generator(config, axis_name)
    discriminator = networks.create_multiscale_discriminator(config)
    encoder = (networks.create_feature_encoder(config) if networks.uses_features(config)
               else None)
    tx = create_optimizer(config)
    schedule = schedules.create_schedule(config.optim, steps_per_epoch)
    step = make_train_step(generator, discriminator, tx, config, schedule,
                           fix_global_steps(config, steps_per_epoch), axis_name, encoder)
    init = lambda: create_train_state(jax.random.PRNGKey(config.seed), generator,
                                      discriminator, tx, config, encoder)
    # The training images' size as far as the config tells it (no crop: crop_size x
    # load_size); another size compiles again at its first batch.
    size = input_pipeline.train_size(config.data)
    shapes = {'target': ((*size, config.model.out_channels), np.float32)}
    if hd.label_nc:
      # The pipeline's label dtype: uint8 ids up to 256 labels (a quarter of the bytes).
      shapes['label'] = (size, np.uint8 if hd.label_nc <= 256 else np.int32)
    else:
      shapes['input'] = ((*size, config.model.in_channels), np.float32)
    if hd.instance_map:
      shapes['instance'] = (size, np.int32)
    constants = None
    if hd.vgg_loss:
      from p2p_jax.pytorch import vgg19_weights  # pylint: disable=import-outside-toplevel
      constants = functools.partial(vgg19_weights.load, hd.vgg_weights)
    warm_start = functools.partial(load_pretrained, config) if hd.load_pretrain else None
    return base.Setup(init, step, lambda n: base.zeros_batch(shapes, n), constants,
                      warm_start)

  def describe(self, config, state) -> str:
    hd = _hd(config)
    terms = ['GAN'] + (['feature matching'] if hd.feat_match else []) + (
        ['VGG19'] if hd.vgg_loss else []) + (
            [f'L1 x {hd.lambda_l1:g} (not the official objective)'] if hd.lambda_l1 else [])
    g = state.g.params
    encoder = (f' + feature encoder E ({state_lib.param_count(g["E"]):,} params, '
               f'{hd.feat_num} features per {"label" if hd.label_feat else "instance"})'
               if 'E' in g else '')
    return (f'{config.model.generator} G ({state_lib.param_count(g["G"]):,} '
            f'params){encoder} + {hd.num_D}-scale D ({state_lib.param_count(state.d.params):,}'
            f'); {" + ".join(terms)}')

  def generator(self, config, direction: str = 'AtoB', axis_name: str | None = None):
    self.check_direction(direction)
    hd = _hd(config)
    packed = label_maps.packed_channels(hd.label_nc, hd.instance_map,
                                        config.model.in_channels)
    if networks.uses_features(config):
      given = bool(hd.cluster_path)   # features from clusters, else E on a photo
      return LabelsAndFeaturesToImage(
          networks.create_generator(config, axis_name), networks.create_feature_encoder(config),
          hd.label_nc, hd.instance_map, bool(hd.label_feat), given,
          packed + (hd.feat_num if given else config.model.out_channels))
    return LabelsToImage(networks.create_generator(config, axis_name), hd.label_nc,
                         hd.instance_map, packed)

  def generator_variables(self, g_variables: dict, direction: str = 'AtoB') -> dict:
    self.check_direction(direction)
    params = g_variables['params']
    if 'E' in params:
      return {'params': {'generator': params['G'], 'encoder': params['E']},
              'batch_stats': {}}
    return {'params': params['G'], 'batch_stats': {}}

  # How batches and files become the generator's input (base.Method).

  def model_input(self, config, batch: dict) -> np.ndarray:
    hd = _hd(config)
    packed = label_maps.pack(hd.label_nc, hd.instance_map, batch)
    if networks.uses_features(config):
      if hd.cluster_path:
        ids = batch['label'] if hd.label_feat else batch['instance']
        extra = np.stack([self.feature_map(config, i) for i in np.asarray(ids)])
      else:
        # The photo whose features E encodes: the batch's own (evaluate, validation).
        extra = np.asarray(batch['target'], np.float32)
      packed = np.concatenate([packed, extra], -1)
    return packed

  def shown_input(self, config, batch: dict) -> np.ndarray:
    hd = _hd(config)
    if hd.label_nc:
      return label_maps.colorize(batch['label'], hd.label_nc)
    return batch['input']

  def check_file_input(self, config) -> None:
    hd = _hd(config)
    if not networks.uses_features(config):
      return
    if not hd.label_nc:
      raise ValueError(
          'translating files with the feature encoder needs label maps (label_nc > 0); this '
          'model takes images (label_nc 0): not implemented')
    if not hd.cluster_path:
      raise ValueError(
          'this model has the feature encoder (pix2pixhd.instance_feat / label_feat): each '
          'label map file needs features, drawn from k-means clusters of the training set\'s '
          '(the official encode_features.py): run python -m p2p_jax.encode_features '
          '--workdir=WORKDIR once; translate then reads its features_clustered_010.npz')
    feature_clusters.load_once(hd.cluster_path, hd.feat_num)   # a bad file: one line, now

  def commands_before_translate(self, config, workdir: str,
                                checkpoint: str = 'latest') -> list[str]:
    """With the feature encoder and no clusters file: encode_features (once), with the
    encoder of the checkpoint translate will use."""
    if not networks.uses_features(config) or _hd(config).cluster_path:
      return []
    try:
      if feature_clusters.find(workdir):
        return []
    except ValueError:  # several files: translate says which to keep
      return []
    return ['python -m p2p_jax.encode_features '
            f'--workdir={shlex.quote(os.path.abspath(workdir))} --checkpoint={checkpoint}']

  def file_inference_config(self, config, workdir: str, seed: int = 0):
    """With the feature encoder: features drawn with `seed` (translate --seed), from the
    workdir's clusters file (feature_clusters.find) unless cluster_path names one
    (check_file_input says what to do when there is none)."""
    hd = _hd(config)
    if not networks.uses_features(config):
      return config
    config = config.copy_and_resolve_references()
    config.seed = seed   # the draws' seed (config.seed is the training run's otherwise)
    if not hd.cluster_path:
      config.pix2pixhd.cluster_path = feature_clusters.find(workdir) or ''
    return config

  def feature_map(self, config, ids: np.ndarray) -> np.ndarray:
    """Features [H, W, feat_num] drawn from config.pix2pixhd.cluster_path for one image's
    ids [H, W] (instance ids; label ids with label_feat): instance i takes cluster
    number default_rng([config.seed, i]) of its label's (feature_clusters)."""
    hd = _hd(config)
    centers, _ = feature_clusters.load_once(hd.cluster_path, hd.feat_num)
    return feature_clusters.sample_feature_map(centers, np.asarray(ids).astype(np.int64),
                                               hd.feat_num, seed=config.seed)

  def read_input(self, config, path: str, info: dict | None = None) -> np.ndarray:
    """A label map file as ids [H, W, 1], or [H, W, 2] with its instance map where
    label_maps.find_instance_map finds one (and instance_map is on); otherwise the
    label map stands in for it (image_to_model_input), which a warning says once."""
    hd = _hd(config)
    self.check_file_input(config)
    if not hd.label_nc:
      return image_io.read_image(path, info)
    if info is not None:
      info['alpha'] = False  # ids, not colours
    label = label_maps.read_label_file(path)
    instance_path = label_maps.find_instance_map(path) if hd.instance_map else None
    if instance_path is None:
      if hd.instance_map and not self._warned:
        self._warned = True
        logging.warning('no instance map found beside %s (e.g. its *_instanceIds.png, or '
                        '<x>_inst/ beside <x>_label/): the label map\'s own boundaries '
                        'stand in for the instance boundaries', path)
      return label[..., None]
    instance = label_maps.read_label_file(instance_path)
    if instance.shape != label.shape:
      raise image_io.ImageError(f'{instance_path}: instance map of size {instance.shape}, '
                                f'but its label map {path} is {label.shape}')
    return np.stack([label, instance], -1)

  def image_to_model_input(self, config, image, in_channels: int):
    """A label map [H, W] / [H, W, 1] of ids (or [H, W, 2]: label and instance ids) ->
    the packed input; without an instance map the label map stands in for it (its class
    boundaries; boundaries between touching objects of one class are then missing). With
    label_nc 0: the image as for pix2pix (instance channel 0: no edges)."""
    hd = _hd(config)
    if networks.uses_features(config) and not hd.cluster_path:
      x = np.asarray(image)
      if x.ndim != 3 or x.shape[-1] != in_channels:
        raise ValueError(f'pix2pixHD with the feature encoder translates [H, W, {in_channels}] '
                         f'arrays (label ids, instance ids, then the photo in [-1, 1] whose '
                         f'features it encodes), got shape {x.shape}')
      return x.astype(np.float32), False
    if networks.uses_features(config):
      # Label maps (+ instances) as without the encoder, then features from the clusters.
      self.check_file_input(config)
      x, as_uint8 = self._ids_input(config, image, in_channels - hd.feat_num)
      ids = x[..., 0] if hd.label_feat else x[..., -1]
      return np.concatenate([x, self.feature_map(config, ids)], -1), as_uint8
    return self._ids_input(config, image, in_channels)

  def _ids_input(self, config, image, in_channels: int):
    hd = _hd(config)
    if not hd.label_nc:
      channels = in_channels - (1 if hd.instance_map else 0)
      x, as_uint8 = super().image_to_model_input(config, image, channels)
      if hd.instance_map:
        x = np.concatenate([x, np.zeros_like(x[..., :1])], -1)
      return x, as_uint8
    ids = np.asarray(image)
    ids = ids[..., None] if ids.ndim == 2 else ids
    if ids.ndim != 3 or ids.shape[-1] not in (1, 2) or not np.issubdtype(ids.dtype,
                                                                          np.integer):
      raise ValueError(f'pix2pixHD translates label maps: integer ids [H, W] (or [H, W, 2]: '
                       f'label and instance ids), got {ids.dtype} shape {ids.shape}')
    if ids.min() < 0 or ids[..., 0].max() >= hd.label_nc:
      raise ValueError(f'label ids must be in 0..{hd.label_nc - 1} (label_nc '
                       f'{hd.label_nc}), got {ids[..., 0].min()}..{ids[..., 0].max()}')
    if hd.instance_map and ids.shape[-1] == 1:
      ids = np.concatenate([ids, ids], -1)
    return ids[..., :in_channels].astype(np.float32), True


METHOD = Pix2PixHD()
