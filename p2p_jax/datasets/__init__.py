"""Datasets for pix2pix: the names it knows (`catalog`), a TFDS builder (`pix2pix_aligned`),
the file readers it uses (`sources`) and the embedded Blue Marble tiles (`blue_marble/`).

Importing this package is cheap; TensorFlow Datasets is loaded only by `pix2pix_aligned`,
which the input pipeline imports when it first needs data.
"""
