"""Lesson 04's graded questions: fused (SDPA) and flash attention."""
