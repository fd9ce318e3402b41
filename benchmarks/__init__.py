"""Performance harnesses behind ``make bench`` (``python -m benchmarks``); see ``__main__``.

Not part of the installed package and never imported by it (docs/architecture.md, "Folders and what each owns").
"""
