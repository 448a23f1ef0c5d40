"""The `sunk` command line, a thin layer over the sunkbridge library."""
