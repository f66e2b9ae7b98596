"""The CNNs: architectures, model files and their cards, the built-in models, training data and its split, the fit
with its checkpoints, evaluation and its report, and detector-like training data (docs/architecture.md)."""
