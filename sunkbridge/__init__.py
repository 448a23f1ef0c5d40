"""sunkbridge: Slurm on Kubernetes, with sbatch submissions run as pod groups."""

__version__ = "0.1.0"
