"""The SlurmCluster operator: typed spec, pure builders, Slurm calls and kopf handlers."""
