"""Benchmarks (run by hand, not tests): extract, push, time to value and the whole command's memory."""
