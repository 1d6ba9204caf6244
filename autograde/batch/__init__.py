"""Grading a class: collecting submissions, the parallel batch and its workers, the gradebook
and course file, results, overrides and the review page, reports, LMS export, nbgrader's
exchange and Slurm. The instructor's only: the student kit leaves this folder out."""
