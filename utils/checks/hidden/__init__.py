"""The hidden cases and hidden checks of every lesson: read by the trusted checker only.

A lesson's hidden test cells (in the gradebook, never in the release) import their checks from
here: ``from utils.checks.hidden.batchnorm import check_batchnorm_forward_hidden``. Each module
is named after the check family it completes (``utils.checks.<family>`` holds the visible
checks and the engine both share; this package holds only which cases the hidden checks run and
how they are labelled). A grading kernel cannot read ``utils.checks`` at all (Landlock, see
``grader.policy``) and the student bundle (``grader.bundle``) leaves this package out, so the
hidden inputs reach a learner only as the arguments of a graded call, and their expected values
and the checks' code never do.
"""
