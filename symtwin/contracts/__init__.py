"""Contracts per exchange, settlement against the stand-alone counterfactual, value allocation, reports."""
