"""Task folders: defaults, validation, one-line errors naming the file and the key."""

import pytest

from evoforge.engine.task import load_task
from evoforge.evaluators.types import ConfigError, TaskError
from fakes.tasks import write_tiny_task


def test_tiny_task_loads_with_declared_and_default_values(tmp_path):
    task = load_task(write_tiny_task(tmp_path / "t", islands=3))
    assert task.name == "tiny" and task.objective == "maximize" and task.sign == 1.0
    assert [d.name for d in task.descriptors] == ["slope", "code_length"]
    assert task.descriptors[0].low == 0.0 and task.descriptors[0].high == 6.0 and task.descriptors[0].bins == 12
    assert task.archive.islands == 3 and task.archive.migration_interval == 5
    assert task.limits.timeout_s == 10 and task.resources.num_cpus == 1.0


def test_a_folder_without_task_toml_gets_defaults(tmp_path):
    path = write_tiny_task(tmp_path / "t")
    (path / "task.toml").unlink()
    task = load_task(path)
    # No task.toml: read as an OpenEvolve folder, whose default descriptors are OpenEvolve's
    # (complexity, diversity: engine.features), which separate constant-tuning children.
    assert task.name == "t" and [d.name for d in task.descriptors] == ["complexity", "diversity"]


@pytest.mark.parametrize("toml, fragment", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('[limits]\ntimeout = 3\n', "[limits]: unknown key 'timeout'"),
    ('objective = "biggest"\n', "expected 'maximize' or 'minimize'"),
    ('[[descriptors]]\nname = "x"\nrange = [1.0, 0.0]\n', "low < high"),
    ('[[descriptors]]\nname = "x"\nrange = [0.0, 1.0]\nbins = 0\n', "positive integer"),
    ('[archive]\nkind = "hex"\n', "expected 'grid' or 'cvt'"),
    ('[limits]\nmemory_mb = "lots"\n', "memory_mb"),
    ('[archive]\nexploit_ratio = 2.0\n', "exploit_ratio in [0, 1]"),
    ('name = \n', "not valid TOML"),
])
def test_bad_task_toml_is_a_config_error_naming_file_and_key(tmp_path, toml, fragment):
    path = write_tiny_task(tmp_path / "t")
    (path / "task.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_task(path)
    assert fragment in str(info.value) and str(path / "task.toml") in str(info.value)


def test_missing_evaluator_and_unknown_task_are_clear(tmp_path):
    path = write_tiny_task(tmp_path / "t")
    (path / "evaluator.py").unlink()
    with pytest.raises(TaskError, match="no evaluator.py"):
        load_task(path)
    with pytest.raises(ConfigError, match="unknown task 'no_such_task'.*evoforge tasks"):
        load_task("no_such_task")


def test_unbalanced_markers_in_initial_program_are_a_task_error(tmp_path):
    path = write_tiny_task(tmp_path / "t", program="# EVOLVE-BLOCK-START\nx = 1\n")
    with pytest.raises(TaskError, match="initial_program.py"):
        load_task(path)
