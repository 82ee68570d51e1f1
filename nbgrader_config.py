"""nbgrader configuration for NormLab.

Instructor sources (solutions + hidden tests) live in `solutions/`, the generated student
release in `notebooks/`. Course state (submissions, gradebook, feedback) lives in the course
directory given to `python -m grader --course-dir` (default `.course/`, git-ignored); the
grader sets those paths itself, so plain `nbgrader` commands run from here only build.
"""

c = get_config()  # noqa: F821  (injected by traitlets)

c.CourseDirectory.course_id = "normlab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.db_url = "sqlite:///.course/gradebook.db"
