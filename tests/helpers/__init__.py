"""Helpers shared by test folders (importable as ``helpers`` because pyproject's pytest
``pythonpath`` holds ``tests``). No test files here: collection is unchanged."""
