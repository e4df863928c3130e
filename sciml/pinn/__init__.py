"""PINN engine for singular ODEs (the only place that imports DeepXDE)."""
