"""Benchmarks: speeds measured as ratios against a stated baseline run side by side."""
