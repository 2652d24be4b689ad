"""The performance suite of SPEC section 9: `python -m benchmarks`."""
