"""Optional accelerated kernels behind the mechanisms' ``backend=`` switch.

Nothing here is imported at ``core.attention`` import time: a mechanism imports its kernel module when a
forward pass first asks for that backend (see :mod:`core.attention.backends`). Each kernel has a plain
PyTorch twin in its mechanism's file, which is the reference the kernel is tested against.
"""
