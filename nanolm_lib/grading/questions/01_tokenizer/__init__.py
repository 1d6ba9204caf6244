"""Lesson 01's graded questions: a byte-level BPE tokenizer from scratch."""
