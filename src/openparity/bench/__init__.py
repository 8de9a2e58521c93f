"""MEASURE: tasks, the sandbox, runs and the run store, statistics and reports.

openparity gap                      # the embedded model vs published closed baselines
openparity bench run MODEL TASK     # one run; `bench compare` / `bench report` after
"""
