"""Lesson 07's graded questions: top-k, sampling one token, generation."""
