"""openparity: measure, close and route around the quality gap between open and closed LLMs.

Importing the package is cheap on purpose: every capability imports its heavy dependencies
(llama.cpp, openai, torch, ...) inside the module that needs them.
"""

__version__ = "0.1.0"
