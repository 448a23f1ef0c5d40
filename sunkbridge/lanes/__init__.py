"""Test and sandbox lanes: real daemons started on loopback (Slurm, Kubernetes)."""
