"""Pure allocation maths: stable hashing into buckets (hashing.py), fixed splits and Thompson
sampling (policies.py), and posteriors that account for conversions still to come (delays.py).

numpy/scipy only; nothing here knows about HTTP or storage.
"""
