"""Other projects' own test suites, run with lazyapply swapped in for their copy."""
