"""Speed benchmarks (`make bench`): each measures a yardstick and the system in the same run."""
