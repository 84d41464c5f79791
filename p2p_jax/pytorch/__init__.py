"""PyTorch interop: the reference's weights (junyanz/pytorch-CycleGAN-and-pix2pix) in and out.

  state_dicts.py        what every network's conversion shares: tensor layouts, norm
                        inference, old files' instance-norm statistics (numpy only)
  weights.py            U-Net and PatchGAN state dicts <-> flax variables, the architecture
                        inferred from the tensors; either generator
  resnet_weights.py     CycleGAN's ResnetGenerator likewise
  files.py              .pth files, read and written with torch (imported only then)
  runs.py               a reference run's files or checkpoint folder: which method, into
                        and out of a workdir
  workdir.py            pix2pix's G and D as a p2p_jax workdir (step-0 checkpoint +
                        config.json + pytorch_import.json) and back
  cyclegan_workdir.py   CycleGAN's G_A, G_B, D_A, D_B likewise
  pretrained.py         the 23 generators the reference publishes, by name, from a cache
  pretrained_models.py  what each of them translates and was trained on

The command line is `python -m p2p_jax.convert`; `translate`, `evaluate` and `export` take
`--pretrained=NAME`. Nothing here needs torch until a .pth file is read or written.
"""
