"""Chemistry: RDKit molecular graphs as network inputs, molecule I/O, input validation."""
