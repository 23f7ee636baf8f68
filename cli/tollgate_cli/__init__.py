"""`tollgate`: the operator's command-line tool for keys, usage and budgets (and the IAM bootstrap)."""

__version__ = "0.1.0"
