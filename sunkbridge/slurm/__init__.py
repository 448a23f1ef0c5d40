"""Slurm configuration rendering and Slurm-facing helpers."""
