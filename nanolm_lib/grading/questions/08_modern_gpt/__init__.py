"""Lesson 08's graded questions: RMSNorm, RoPE, SwiGLU, grouped-query attention,
the modern block and GPT."""
