"""Lesson 02's graded questions: stories packed into tokens, and random batches."""
