"""CLOSE (architecture): DeepSeekMoE layers, routers, balancing, a small MoE LM, export.

Needs PyTorch (`pip install "openparity[train]"`); nothing here is imported by `import openparity`.
"""
