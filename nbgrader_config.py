"""nbgrader configuration for the tinytorch course (nbgrader reads it from the current directory)."""

c = get_config()  # type: ignore[name-defined]  # noqa: F821

c.CourseDirectory.course_id = "tinytorch"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Student releases carry a placeholder the student replaces, never a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Per-cell time limit while grading.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
# Feedback goes back without hidden test sources or the tracebacks that would show them.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "course.feedback.ScrubHiddenTests",
]

# Every grading kernel runs in a bubblewrap sandbox (course/sandbox.py): nbgrader's Execute
# preprocessor is swapped for one that starts sandboxed kernels and checks that each test cell ran to its
# end (course/execute.py). COURSE_NO_SANDBOX=1 turns the sandbox off.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
    "course.guard.GuardCells",  # fails a test cell whose helpers the notebook replaced (course/guard.py)
    "course.speed.SkipUngradedTail",  # the systems view after the last test cell is not run (course/speed.py)
]
c.Autograde.autograde_preprocessors = [
    "course.execute.SandboxedExecute",  # nbgrader's Execute: sandboxed kernels, proofs, limits (course/execute.py)
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# `nbgrader validate` (and JupyterLab's Validate button) start kernels on Unix sockets in a private
# folder: over TCP, ipykernel warns the learner on every run about an unencrypted connection.
# Grading kernels always start in the sandbox: course.execute.SandboxedExecute ignores this setting.
c.Execute.kernel_manager_class = "course.kernels.PrivateIpcKernelManager"

# What student code may import and use (course/policy.py), checked before anything runs. Widen it for
# every module or for one, e.g.:
#   c.GradingPolicy.extra_imports = ["fractions"]
#   c.GradingPolicy.module_imports = {"05_dataloader": ["gzip", "struct"]}
c.GradingPolicy.extra_imports = []
c.GradingPolicy.module_imports = {}
# Limits of each notebook while grading (course/execute.py); memory and processes per submission are in
# course/sandbox.py (Limits).
c.SandboxedExecute.notebook_timeout = 180  # wall-clock seconds for the whole notebook (honest ones take seconds)
c.SandboxedExecute.cell_output_bytes = 1024**2  # output kept per cell, the rest dropped as it arrives
c.SandboxedExecute.notebook_output_bytes = 8 * 1024**2

# Module 20's notebook writes the capstone's three files next to itself (its own run in source/ too): never
# copied into the release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "model.json", "model.npz",
                            "metrics.json"]
