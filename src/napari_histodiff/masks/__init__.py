"""Masks: the automatic labeller and the mask editing tools."""
