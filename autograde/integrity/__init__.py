"""What the grader reads on the source, outside the sandbox: the scan of solution cells
(patching, the reference's use, each question's policy), copies of the reference and
similarity between students. The student's ``check`` runs the same scans."""
