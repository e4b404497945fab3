"""Crash-consistency trials: kill -9 the broker under confirmed load and check nothing is lost."""
