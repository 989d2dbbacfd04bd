"""Readable NumPy twins of the fast kernels, written to be read first and tested against."""
