"""Imports the candidate in-process and calls run(): a number is the score, a dict is passed through."""

import importlib.util


def evaluate(program_path):
    spec = importlib.util.spec_from_file_location("hostile_candidate", program_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value = module.run()
    return value if isinstance(value, dict) else {"score": float(value)}
