"""Pure allocation maths: stable hashing into buckets, fixed splits, Thompson sampling.

numpy/scipy only; nothing here knows about HTTP or storage.
"""
