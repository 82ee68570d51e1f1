"""The checks that notebook test cells call, one module per family of exercises.

Every check calls the learner's numpy function through ``utils.guard.call_without_torch``,
compares against ``utils.reference`` in float64 with ``utils.diagnose.assert_close`` and
prints one line per passing check; a failing check raises ``CheckFailure`` with a hint.
"""
