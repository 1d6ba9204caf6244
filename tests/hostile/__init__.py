"""Attacks on the grader: each in a batch with an honest and a blank student (see conftest.py)."""
