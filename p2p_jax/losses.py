"""The pix2pix objective as pure functions of logits and images.

  G* = arg min_G max_D  L_cGAN(G, D) + lambda * L_L1(G)        (paper, Eq. 4)

D is trained on 0.5 * (loss on real + loss on fake); the halving (paper, Section 3.3)
only rescales D's gradients, which Adam's normalisation almost entirely undoes, so it is
kept for fidelity rather than effect. G uses the non-saturating loss: it maximises
log D(x, G(x)) instead of minimising log(1 - D(x, G(x))). Everything works on logits:
sigmoid + log would lose precision where D is confident.
"""

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ('vanilla', 'lsgan')
RECON_LOSSES = ('l1', 'l2')


def gan_loss(logits: jax.Array, target_is_real: bool, mode: str = 'vanilla') -> jax.Array:
  """Mean adversarial loss of a logit map against an all-real or all-fake label.

  vanilla: binary cross-entropy with logits (the paper). lsgan: mean squared error of the
  raw output against 1 / 0 (Mao et al.; an option of the PyTorch reference).
  """
  label = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, label))
  if mode == 'lsgan':
    return jnp.mean(jnp.square(logits - label))
  raise ValueError(f'gan_mode must be one of {GAN_MODES}, got {mode!r}')


def discriminator_loss(real_logits, fake_logits, mode: str = 'vanilla'):
  """D's loss, 0.5 * (real + fake), and its two parts for logging as D_real and D_fake."""
  d_real = gan_loss(real_logits, True, mode)
  d_fake = gan_loss(fake_logits, False, mode)
  return 0.5 * (d_real + d_fake), {'D_real': d_real, 'D_fake': d_fake}


def generator_gan_loss(fake_logits, mode: str = 'vanilla'):
  """Non-saturating generator loss: fake patches labelled real."""
  return gan_loss(fake_logits, True, mode)


def reconstruction_loss(output, target, kind: str = 'l1') -> jax.Array:
  """Mean absolute (l1) or squared (l2) error per pixel and channel."""
  diff = output.astype(jnp.float32) - target.astype(jnp.float32)
  if kind == 'l1':
    return jnp.mean(jnp.abs(diff))
  if kind == 'l2':
    return jnp.mean(jnp.square(diff))
  raise ValueError(f'recon must be one of {RECON_LOSSES}, got {kind!r}')


def generator_loss(fake_logits, output, target, loss_config):
  """G's total loss, gan_weight * L_GAN + recon_weight * L_recon, and its parts.

  `fake_logits` may be None when gan_weight is 0 (the paper's "L1 only" row), in which case
  no discriminator is evaluated at all.
  """
  recon = reconstruction_loss(output, target, loss_config.recon)
  total = loss_config.recon_weight * recon
  metrics = {'G_L1' if loss_config.recon == 'l1' else 'G_L2': recon}
  if fake_logits is not None:
    g_gan = generator_gan_loss(fake_logits, loss_config.gan_mode)
    total = total + loss_config.gan_weight * g_gan
    metrics['G_GAN'] = g_gan
  metrics['G_total'] = total
  return total, metrics


# The paper's Table 1 / Figure 4 rows, as overrides of the `loss` config block.
ABLATIONS = {
    'l1': dict(gan_weight=0.0, recon_weight=100.0, conditional=True),
    'gan': dict(gan_weight=1.0, recon_weight=0.0, conditional=False),
    'cgan': dict(gan_weight=1.0, recon_weight=0.0, conditional=True),
    'l1+gan': dict(gan_weight=1.0, recon_weight=100.0, conditional=False),
    'l1+cgan': dict(gan_weight=1.0, recon_weight=100.0, conditional=True),
}


def apply_ablation(loss_config, name: str):
  """Sets `loss_config` (a ConfigDict) to one of the paper's objective ablations, in place."""
  if name not in ABLATIONS:
    raise ValueError(f'ablation must be one of {sorted(ABLATIONS)}, got {name!r}')
  for key, value in ABLATIONS[name].items():
    setattr(loss_config, key, value)
  return loss_config
