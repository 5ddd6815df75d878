"""Numerical checks of the theorems of neural collapse under class imbalance.

One module per statement, each registered in `proofs_checks.registry`; `python -m proofs_checks`
runs them all and prints a PASS/FAIL/ERROR table (see `proofs_checks.__main__`).
"""
