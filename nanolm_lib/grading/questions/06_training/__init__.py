"""Lesson 06's graded questions: loss, perplexity, schedule, one step, AdamW,
clipping, evaluation."""
