"""NormLab's grading pipeline around nbgrader, one module per stage.

course      where things are: sources, release, course state; nbgrader configuration and logs
markup      nbgrader's markup in cell sources: solution fences, hidden-test regions
build       solutions/ -> notebooks/, and the template gradebook + release workers grade with
sanitize    reconcile a submission's nbgrader cells with the release (deleted, retagged cells)
sandbox     the grading kernel: memory limit, wall-clock cap, integrity probe, no NBGRADER_EXECUTION
launcher    starts a grading kernel: memory limit, environment, the jail's audit hook
jail        inside the kernel: the audit-hook fence (files, processes) and the fingerprint
score       points per grade cell (errors anywhere in a test cell win) and failure messages
worker      the stateless unit of grading: one submission in, one picklable result out
collect     find submissions in a folder or an LMS zip; report what cannot be mapped
gradebook   the single writer that records results in nbgrader's gradebook, and its reads
grade       the run over many submissions (local processes, or a Dask cluster)
export      grades.csv and the per-test CSV
feedback    HTML feedback without hidden-test source
validate    solutions pass, releases fail and leak nothing
check       self-study grading of one notebook
demo        build, grade samples/, export, feedback
cli         `python -m grader ...`
"""
