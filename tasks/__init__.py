"""Built-in task folders, each a complete example of the task contract (docs/architecture.md, "The task contract").

This package holds data, not engine logic: ``evoforge.engine.task.builtin_tasks()`` finds the folders.
"""
