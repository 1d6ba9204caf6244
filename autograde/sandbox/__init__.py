"""Running a notebook's code where it cannot reach the grader: the sandbox launcher
(bubblewrap, limits), the kernel it starts, the preprocessors that run cells, the verdict (the
grader's run of the hidden cases on the solution cells alone, and its judgement) and the staged
library that run imports. The student's ``check`` runs these too; nothing here imports the
batch or the authoring."""
