"""The data stage: raw chest X-rays into preprocessed, sharded HDF5, and reading them back.

Modules: ``sources`` (dataset layouts, image and mask loading), ``preprocess``
(lung crop, resize, annotation detector, the parallel stage driver), ``splits``
(seeded, stratified, patient-aware splits), ``shards`` (HDF5 shard writer and
reader, manifest, verify, info), ``dataset`` (torch Dataset and distributed
sampler), ``phantom`` (procedural CXR-like test images in the Kaggle layout).

This package imports nothing from the GAN, classifier or CLI layers.
"""

DEFAULT_CLASSES = ("COVID", "Normal")
