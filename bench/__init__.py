"""`make bench`: benchmarks that print each figure as a ratio to a baseline measured in the same run."""
