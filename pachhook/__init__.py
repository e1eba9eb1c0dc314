"""pachhook: git hooks that turn a Pachyderm pipeline repository into a delivery line.

Kept import-free on purpose: every hook process imports this package first.
"""

__version__ = "0.1.0"
