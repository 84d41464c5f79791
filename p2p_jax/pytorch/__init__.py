"""PyTorch interop: the reference's weights (junyanz/pytorch-CycleGAN-and-pix2pix) in and out.

  weights.py     state dict <-> flax variables, the architecture inferred from the tensors
                 (numpy only)
  files.py       .pth files, read and written with torch (imported only then)
  workdir.py     a reference model as a p2p_jax workdir (step-0 checkpoint + config.json),
                 and a workdir's checkpoint as .pth files
  pretrained.py  the five generators the reference publishes, by name, from a cache folder

The command line is `python -m p2p_jax.convert`; `translate` and `evaluate` take
`--pretrained=NAME`. Nothing here needs torch until a .pth file is read or written.
"""
