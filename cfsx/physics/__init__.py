"""The physics of occupancy disorder: the compiled engine (Monte Carlo, feedback, lot-averaged diffraction) and its
NumPy twins, the CFS encoding, the Warren-Cowley least squares and the metrics (docs/architecture.md)."""
