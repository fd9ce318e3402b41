"""Prompts put the stable part first, so the providers' prompt caches can serve it: the system text
(rules, objective, reply format, task) is the same for every prompt of a run with the same reply
format, whatever the parent, inspirations and feedback; all of those are in the user text."""

from evoforge.prompts import ProgramView, PromptContext, render_prompt

A = ProgramView(code="def f(x):\n    return 2 * x\n", score=1.0, metrics={"err": 2.0}, artifacts={"log": "x"})
B = ProgramView(code="def f(x):\n    return 3 * x\n", score=3.0)


def render(**changes):
    values = dict(task_name="triple", task_description="Make f triple its input.", parent=A)
    values.update(changes)
    return render_prompt(PromptContext(**values))


def test_system_text_is_the_stable_prefix():
    base_system, base_user = render()
    for variant in (dict(parent=B), dict(inspirations=[B]), dict(feedback=["rejected edit: no match"]),
                    dict(second_parent=B)):
        system, user = render(**variant)
        assert system == base_system and user != base_user
    assert "Make f triple its input." in base_system and "Make f triple its input." not in base_user
    assert base_system.rstrip().endswith("Make f triple its input.")      # the task closes the stable part
    assert render(reply_format="rewrite")[0] != base_system                # one stable prefix per reply format
