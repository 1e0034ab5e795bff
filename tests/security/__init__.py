"""Regression tests for the security review: hostile input is a 4xx naming the field."""
