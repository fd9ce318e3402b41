"""Built-in task folders, each a complete example of the task contract (DESIGN.md §3).

This package holds data, not engine logic: ``evoforge.engine.task.builtin_tasks()`` finds the folders.
"""
