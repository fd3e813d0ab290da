"""Inverse problems: priors, the imaging likelihood and samplers."""
