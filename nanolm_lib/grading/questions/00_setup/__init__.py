"""Lesson 00, the set-up: it checks the machine and grades no function."""
