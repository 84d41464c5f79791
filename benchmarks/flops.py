"""The arithmetic a step needs, counted from its jaxpr: the yardstick for "fraction of peak".

XLA's cost analysis is no such yardstick: on GPU it leaves out the cuDNN convolutions (a
U-Net-256 training step at batch 64 "costs" 17 GFLOP there, against about 5,600), and it
counts whatever form ran, zeros of dilated inputs included. Here the count is of the
network's convolutions and matrix products as JAX traced them (2 FLOPs per multiply-add),
with the zeros that input (lhs) dilation inserts left out, so the transposed convolutions
and the strided convolutions' input gradients count what they compute usefully. Trace the
model with compute.conv_impl='xla' to count the paper's arithmetic, whatever implementation runs.
"""

import math

import jax


def _subjaxprs(value):
  """Jaxprs held in one equation parameter (pjit, pmap, remat, custom rules, cond)."""
  if hasattr(value, 'eqns'):
    yield value
  elif hasattr(value, 'jaxpr') and hasattr(value.jaxpr, 'eqns'):  # ClosedJaxpr
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _subjaxprs(v)


def _conv_flops(eqn) -> float:
  out = eqn.outvars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out feature, in feature, spatial...)
  per_output = math.prod(rhs[d] for d in rhs_spec[2:]) * rhs[rhs_spec[1]]
  zeros = math.prod(eqn.params['lhs_dilation'])  # of every `zeros` input taps, one is real
  return 2.0 * math.prod(out) * per_output / zeros


def _dot_flops(eqn) -> float:
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval.shape
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)


def jaxpr_flops(jaxpr) -> float:
  """FLOPs of the convolutions and matrix products in `jaxpr` and the jaxprs inside it."""
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'dot_general':
      total += _dot_flops(eqn)
    for value in eqn.params.values():
      for sub in _subjaxprs(value):
        total += jaxpr_flops(sub)
  return total


def gflop(fn, *args, axis_env=None) -> float:
  """GFLOPs of fn(*args) (arrays or jax.ShapeDtypeStruct) by jaxpr_flops; nothing runs."""
  closed = jax.make_jaxpr(fn, axis_env=axis_env)(*args)
  return jaxpr_flops(closed.jaxpr) / 1e9
