"""Helpers the NormLab notebooks import: gradient checks, checks with diagnosis, plots, data.

Modules, one concern each:
    gradcheck   centered-difference numerical gradients and the relative error
    guard       run a numpy exercise with PyTorch forbidden
    diagnose    compare a result with the reference and name the likely mistake
    reference   PyTorch references in float64 (the oracle)
    mistakes    known-wrong variants used for diagnosis and planted-bug tests
    cases       seeded test inputs (small batches, offsets, constant features, strides)
    checks      the checks that visible and hidden notebook tests call
    plots       small matplotlib helpers
    training    training outcomes over seeds: steps to a target accuracy, best learning rate
    data        data sets that ship with packages or are generated
"""
