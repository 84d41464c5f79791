"""A CycleGAN of the PyTorch reference as a p2p_jax workdir, and back.

The reference's CycleGAN run saves four networks (models/cycle_gan_model.py):
latest_net_G_A.pth (A -> B), latest_net_G_B.pth (B -> A), latest_net_D_A.pth (judges B
images) and latest_net_D_B.pth (judges A images); each D sees one image. `import_weights`
writes them as a CycleGAN workdir at step 0, as p2p_jax's trainer would start it
(methods/cyclegan.py's CycleGANState: the converted networks in place of the init, fresh
Adam over both Gs and over both Ds, the seed's key, empty image pools): config.method =
'cyclegan', `translate --direction=AtoB|BtoA`, `evaluate` and `python -m p2p_jax.main`
(fine-tuning, resuming) use it as their own. G_A is required; G_B, D_A and D_B may be
missing (a published model is one G): they are then initialised from the seed, and the
import record (workdirs.IMPORT_FILE) says so, so that a missing G_B is refused at
inference instead of translating with random weights. `export_weights` gives the four
back as the reference's state dicts (load_state_dict(strict=True)).
"""

import jax

from p2p_jax import config_schema, methods, parallel, state as state_lib
from p2p_jax.pytorch import state_dicts as sdl, weights, workdir as workdir_lib

NETWORKS = ('G_A', 'G_B', 'D_A', 'D_B')
G_NAMES, D_NAMES = NETWORKS[:2], NETWORKS[2:]


def _describe(arch: dict) -> str:
  return (f"{arch['generator']} (ngf {arch['ngf']}, {arch['in_channels']} -> "
          f"{arch['out_channels']} channels, {arch['norm']} norm"
          + (', dropout' if arch.get('dropout') else '') + ')')


def networks_from_torch(state_dicts: dict, norm: str | None = None,
                        sources: dict | None = None) -> tuple[dict, dict]:
  """({name: variables} of the given networks, the config `model` fields they imply).

  state_dicts: {'G_A': ..., and any of 'G_B', 'D_A', 'D_B'}; sources: {name: file} for
  the messages. Checks that G_B maps back (out -> in channels, otherwise G_A's
  architecture), that D_A sees one B image and D_B one A image, and that all share the
  norm. Raises StateDictError (one line, naming the file) otherwise.
  """
  sources = sources or {}
  src = lambda name: sources.get(name) or name
  variables = {}
  # Each network's norm is read off its own tensors (or `norm`), then compared.
  variables['G_A'], arch = weights.generator_from_torch(state_dicts['G_A'], norm, src('G_A'))
  if state_dicts.get('G_B') is not None:
    variables['G_B'], back = weights.generator_from_torch(state_dicts['G_B'], norm, src('G_B'))
    want = {**arch, 'in_channels': arch['out_channels'], 'out_channels': arch['in_channels']}
    if back != want:
      sdl.fail(f'G_B is a {_describe(back)}, but it must map G_A\'s output back: '
               f'{_describe(want)} (G_A: {sources.get("G_A") or "G_A"})', src('G_B'))
  d_arch = None
  for name, channels, judges in (('D_A', arch['out_channels'], 'B'),
                                 ('D_B', arch['in_channels'], 'A')):
    if state_dicts.get(name) is None:
      continue
    variables[name], got = weights.discriminator_from_torch(state_dicts[name], norm, src(name))
    cin = variables[name]['params']['conv1']['kernel'].shape[2]
    if cin != channels:
      pair = (" (x and y: pix2pix's D)" if cin == arch['in_channels'] + arch['out_channels']
              else '')
      sdl.fail(f"{name}'s first conv takes {cin} channels{pair}, but CycleGAN's {name} "
               f'judges one domain-{judges} image of {channels} channels', src(name))
    if got['norm'] != arch['norm']:
      sdl.fail(f"{name} uses norm {got['norm']!r}, G_A {arch['norm']!r}; p2p_jax's model.norm "
               'is shared', src(name))
    if d_arch is not None and got != d_arch:
      sdl.fail(f'{name} has ndf {got["ndf"]}, {got["d_layers"]} layers; D_A has '
               f'ndf {d_arch["ndf"]}, {d_arch["d_layers"]}: model.ndf and model.d_layers are '
               'shared', src(name))
    d_arch = got
  return variables, {**arch, **(d_arch or {})}


def reference_config():
  """The schema's config with the reference's CycleGAN choices (LSGAN, no dropout)."""
  config = config_schema.get_config()
  config.method = 'cyclegan'
  config.loss.gan_mode = 'lsgan'  # the reference's train_options default for CycleGAN
  config.model.dropout = False    # cycle_gan_model.py: set_defaults(no_dropout=True)
  return config


def cyclegan_config(arch: dict, config=None, seed: int | None = None):
  """`config` (default: `reference_config()`) as config.method='cyclegan' with the model
  block the tensors imply."""
  config = reference_config() if config is None else config.copy_and_resolve_references()
  config.method = 'cyclegan'
  for field, value in arch.items():
    config.model[field] = value
  if seed is not None:
    config.seed = seed
  config_schema.validate(config)
  return config


def build_state(config, given: dict):
  """The CycleGANState p2p_jax's trainer would start from (config.seed: init, key, empty
  pools), with the networks in `given` ({name: variables}) in place of their init and
  fresh Adam states. Raises StateDictError if a network's shapes are not the config's."""
  method = methods.get(config)
  setup = method.setup(config, 1, parallel.AXIS)  # the epoch length changes no state
  expected = jax.eval_shape(setup.init)
  for name, variables in given.items():
    net = expected.g if name in G_NAMES else expected.d
    workdir_lib.same_layout(
        {'params': net.params[name], 'batch_stats': net.batch_stats[name]},
        {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})},
        name)
  state = jax.jit(setup.init)()
  tx_g, tx_d, _ = state_lib.create_optimizers(config, steps_per_epoch=1)

  def replaced(net, names, tx):
    params, stats = dict(net.params), dict(net.batch_stats)
    for name in names:
      if name in given:
        params[name] = given[name]['params']
        stats[name] = given[name].get('batch_stats', {})
    params = jax.tree.map(jax.numpy.asarray, params)
    return net.replace(params=params, batch_stats=jax.tree.map(jax.numpy.asarray, stats),
                       opt_state=tx.init(params))

  return state.replace(g=replaced(state.g, G_NAMES, tx_g), d=replaced(state.d, D_NAMES, tx_d))


def import_weights(state_dicts: dict, workdir: str, *, config=None, norm: str | None = None,
                   seed: int | None = None, sources: dict | None = None,
                   record: dict | None = None, untrained_hint: str = '') -> dict:
  """Writes the reference's CycleGAN networks (state_dicts: {'G_A': ..., and any of 'G_B',
  'D_A', 'D_B'}) into `workdir` as a p2p_jax CycleGAN at step 0.

  config: where the non-model fields come from (default: `cyclegan_config`'s); its model
  block is replaced by what the tensors imply. seed: overrides config.seed (the init of
  the networks not given, the step's key). sources: {name: file} for messages and the
  import record; record: extra fields of the record; untrained_hint: what to do for B -> A
  when no G_B is given (said when BtoA is asked of this checkpoint). Returns a summary;
  raises StateDictError / ValueError (nothing written) for input that does not fit.
  """
  sources = dict(sources or {})
  given, arch = networks_from_torch(state_dicts, norm, sources)
  config = cyclegan_config(arch, config, seed)
  workdir_lib.check_target(config, workdir)
  state = build_state(config, given)
  files = {name: (sources.get(name) or '(in memory)') if name in given else None
           for name in NETWORKS}
  rec = workdir_lib.import_record('cyclegan', files, config.seed, **(record or {}))
  if 'G_B' not in given:
    rec['untrained'] = {'BtoA': f'G_B was initialised from seed {config.seed}, not converted '
                                f'(only G_A was given){"; " + untrained_hint if untrained_hint else ""}'}
  workdir_lib.write(config, state, workdir, rec)
  return {'config': config, 'arch': arch, 'converted': [n for n in NETWORKS if n in given],
          'g_params': {n: state_lib.param_count(state.g.params[n]) for n in G_NAMES},
          'd_params': {n: state_lib.param_count(state.d.params[n]) for n in D_NAMES}}


def export_weights(workdir: str, which='latest', names=NETWORKS) -> tuple[int, dict]:
  """(step, {name: state dict}) of a CycleGAN workdir's checkpoint `which` for the
  networks `names`, in the reference's key names, order and layouts."""
  config, step, g, d = workdir_lib.read_checkpoint(
      workdir, which, discriminators=any(n in D_NAMES for n in names))
  model, out = config.model, {}
  pick = lambda tree, name: {'params': tree['params'][name],
                             'batch_stats': (tree.get('batch_stats') or {}).get(name, {})}
  for name in names:
    if name == 'G_A':
      out[name] = weights.generator_to_torch(pick(g, name), model)
    elif name == 'G_B':
      out[name] = weights.generator_to_torch(pick(g, name), model,
                                             in_channels=model.out_channels,
                                             out_channels=model.in_channels)
    else:
      out[name] = weights.discriminator_to_torch(pick(d, name), model)
  return step, out
