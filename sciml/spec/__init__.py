"""Singular ODEs from a YAML spec file: parsing (sympy), regularity analysis and a PINN problem built from them.

``sciml analyze SPEC.yaml`` prints the analysis; ``sciml solve --spec SPEC.yaml`` solves with the PINN engine.
See ``docs/spec.md`` for the format.
"""
