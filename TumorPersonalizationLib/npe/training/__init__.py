"""Data generation and training of NPE's amortised first round (never imported at run time)."""
