"""Job bridge: the launcher, the SlurmJob controller and their builders."""
