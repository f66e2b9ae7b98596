"""Files in and out: cfsx's datasets and their NeXus view, measured images and volumes, atomic writes and locks,
records as JSON and HDF5, checkpoints, progress, CPUs and every figure (docs/architecture.md)."""
