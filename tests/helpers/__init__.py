"""Helpers shared by the test modules: builders, feeds, processes and checks."""
