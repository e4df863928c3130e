"""Plots of results (matplotlib, imported only when a plot is made)."""
