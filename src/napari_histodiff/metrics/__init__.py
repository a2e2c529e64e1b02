"""Measurements of synthetic images: mask fidelity, seams."""
