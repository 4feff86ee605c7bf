"""Figures the runs draw: skeleton grids, PCKh curves, learning curves (matplotlib, no display)."""
