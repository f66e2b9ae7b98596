"""The parts of benchmarks/fuzz.py (make fuzz), whose docstring states the contract it checks.

values (the awkward values and what the shared files hold), drawer (``Drawer``: one case's choices), data_cases and
image_cases (a drawer per command and kind of input), cases (every case, drawn by hypothesis), files (making a
case's files), worker (the supervised worker process that runs the cases) and judge (a case's outcome).
"""
