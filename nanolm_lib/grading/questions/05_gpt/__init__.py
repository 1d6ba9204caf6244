"""Lesson 05's graded questions: LayerNorm, MLP, Block, the GPT, its parameter count."""
