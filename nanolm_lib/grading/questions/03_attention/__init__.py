"""Lesson 03's graded questions: causal attention, naive, and the multi-head layer."""
