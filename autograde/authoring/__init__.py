"""Making the course: ``release`` (lessons from solutions), the visible tests' fixtures, and
``student-kit``. The instructor's only: the student kit leaves this folder out."""
