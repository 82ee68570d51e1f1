"""NormLab's grading pipeline around nbgrader, one module per stage.

course      where things are: sources, release, course state; the nbgrader configuration
nbgrader_glue nbgrader in-process: alembic on PATH, a stamped gradebook, its log and warnings
markup      nbgrader's markup in cell sources: solution fences, hidden-test regions
build       solutions/ -> notebooks/, and the template gradebook + release workers grade with
sanitize    reconcile a submission's nbgrader cells with the release (deleted, retagged cells)
policy      per lesson: may its kernel import torch, which course modules, where its tests run
sandbox     the executor: kernels with a channel, test cells sent to the checker, wall-clock cap
launcher    starts a grading kernel: memory limit, environment, import policy, the jail's audit hook
kernel_side inside the kernel: the import policy's hook, and the server the checker calls into
channel     the checker <-> kernel wire: plain data only (arrays as raw bytes), sizes capped
rpc         requests and replies over the channel, both directions, with deadlines
checker     the trusted checker: runs test cells in the grader against the kernel's objects
jail        inside the kernel: the audit-hook fence (files, processes) and the fingerprint
score       points per grade cell: the checker's record, or (kernel lessons) the cell's outputs
worker      the stateless unit of grading: one submission in, one picklable result out
results     what grading produces: a result per notebook, a grade per test cell
collect     find submissions in a folder or an LMS zip; report what cannot be mapped
gradebook   the single writer that records results in nbgrader's gradebook, and its reads
grade       the run over many submissions (local processes, or a Dask cluster)
export      grades for nbgrader, Canvas, Moodle or Gradescope, and the per-test CSV
bundle      what students get: the release, utils/ and install files, no solutions
feedback    HTML feedback without hidden-test source
validate    solutions pass, releases fail and leak nothing
check       self-study grading of one notebook
demo        build, grade samples/, export, feedback
cli         `python -m grader ...`
"""

import sys

# jsonschema checks the "iri" and "iri-reference" formats with rfc3987_syntax when it can import
# it, and importing it builds a Lark grammar: about 1.3 CPU-s in every process that imports
# nbformat (the grading command, each worker). Nothing the grader validates uses those formats
# (nbformat validates notebooks without a format checker), so the grader's processes go without
# it: jsonschema leaves out the checks of an optional module it cannot import.
# bench/bench_imports.py measures it; tests/test_grader_package.py keeps it harmless.
sys.modules.setdefault("rfc3987_syntax", None)
