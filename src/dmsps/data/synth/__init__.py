"""Synthetic datasets made in code, for the demo, the tests and users without data.

``cardiac``: short-axis cine-MRI-like stacks in the dmsps layout (2D demo).
"""
