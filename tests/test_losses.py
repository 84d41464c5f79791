"""The objective on hand-made logits and images (paper Eq. 1-4, Section 3.3)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from p2p_jax import config_schema, losses
from conftest import tiny_config


def test_vanilla_losses_on_hand_made_logits():
  zeros = jnp.zeros((2, 3, 3, 1))
  # D is undecided: BCE is log 2 for real and fake, and D's halved objective is log 2.
  d_loss, parts = losses.discriminator_loss(zeros, zeros)
  assert math.isclose(float(parts['D_real']), math.log(2), rel_tol=1e-6)
  assert math.isclose(float(d_loss), math.log(2), rel_tol=1e-6)
  # Confident and right: loss ~ 0. Confident and wrong: loss ~ |logit| (no overflow).
  big = jnp.full((1, 2, 2, 1), 100.0)
  assert float(losses.gan_loss(big, True)) < 1e-30
  assert math.isclose(float(losses.gan_loss(-big, True)), 100.0, rel_tol=1e-6)
  # D's loss is 0.5 * (real + fake).
  real, fake = jnp.full((1, 1, 1, 1), 2.0), jnp.full((1, 1, 1, 1), -1.0)
  expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)))
  assert math.isclose(float(losses.discriminator_loss(real, fake)[0]), expected, rel_tol=1e-6)


def test_generator_loss_is_non_saturating():
  """G maximises log D(x, G(x)): its loss is -log sigmoid(l), whose gradient stays large
  where D confidently rejects the fake (l << 0), unlike log(1 - sigmoid(l))."""
  logit = jnp.full((1, 1, 1, 1), -5.0)
  assert math.isclose(float(losses.generator_gan_loss(logit)),
                      -math.log(1 / (1 + math.exp(5.0))), rel_tol=1e-5)
  import jax  # pylint: disable=import-outside-toplevel
  grad = jax.grad(lambda l: losses.generator_gan_loss(l))(logit)
  assert float(jnp.abs(grad).sum()) > 0.99  # saturating form: ~ sigmoid(-5) = 0.0067


def test_lsgan_losses():
  logits = jnp.array([0.5, 2.0]).reshape(1, 1, 2, 1)
  assert math.isclose(float(losses.gan_loss(logits, True, 'lsgan')), (0.25 + 1.0) / 2)
  assert math.isclose(float(losses.gan_loss(logits, False, 'lsgan')), (0.25 + 4.0) / 2)


def test_reconstruction_and_total_generator_loss():
  out = jnp.array([0.0, 1.0, -1.0, 0.5])
  target = jnp.array([0.0, 0.0, 0.0, 0.0])
  assert math.isclose(float(losses.reconstruction_loss(out, target, 'l1')), 2.5 / 4)
  assert math.isclose(float(losses.reconstruction_loss(out, target, 'l2')), 2.25 / 4)
  cfg = tiny_config().loss
  logits = jnp.zeros((1, 2, 2, 1))
  total, parts = losses.generator_loss(logits, out, target, cfg)
  assert math.isclose(float(total), math.log(2) + 100 * 2.5 / 4, rel_tol=1e-6)
  assert set(parts) == {'G_GAN', 'G_L1', 'G_total'}
  cfg.recon = 'l2'
  assert set(losses.generator_loss(logits, out, target, cfg)[1]) == {'G_GAN', 'G_L2', 'G_total'}


@pytest.mark.parametrize('name,gan,recon,conditional', [
    ('l1', 0.0, 100.0, True), ('gan', 1.0, 0.0, False), ('cgan', 1.0, 0.0, True),
    ('l1+gan', 1.0, 100.0, False), ('l1+cgan', 1.0, 100.0, True)])
def test_paper_ablations_are_config_switches(name, gan, recon, conditional):
  config = tiny_config()
  cfg = losses.apply_ablation(config.loss, name)
  assert (cfg.gan_weight, cfg.recon_weight, cfg.conditional) == (gan, recon, conditional)
  config_schema.validate(config)


def test_invalid_loss_config_is_rejected():
  config = tiny_config()
  config.loss.gan_mode = 'wgan'
  with pytest.raises(ValueError, match="loss.gan_mode must be one of"):
    config_schema.validate(config)
  config = tiny_config()
  cfg = config.loss
  cfg.gan_weight, cfg.recon_weight = 0.0, 0.0
  with pytest.raises(ValueError, match='nothing to train'):
    config_schema.validate(config)
  with pytest.raises(ValueError, match='ablation must be one of'):
    losses.apply_ablation(cfg, 'l1+l2')
  assert np.isfinite(float(losses.gan_loss(jnp.full((1,), -1e4), True)))
