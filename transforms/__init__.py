"""Stage modules, landing → raw → staged → core → out: SQL-first steps that flows wire together."""
