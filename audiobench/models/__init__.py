"""Classifiers: the CNN14 family and its training."""
