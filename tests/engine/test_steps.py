from hogwild_agents.text.steps import contains_final_answer, ends_step


def test_step_ends_on_blank_line_after_a_sentence() -> None:
    assert ends_step("I add the numbers.\n\n", ".\n\n")
    assert ends_step("Is it 5?\n\n", "\n\n")


def test_step_does_not_end_without_blank_line_or_sentence_end() -> None:
    assert not ends_step("I add the numbers.\n", ".\n")
    assert not ends_step("First, the numbers:\n\n", ":\n\n")
    assert not ends_step("so we get,\n\n", "\n\n")
    assert not ends_step("\n\n", "\n\n")


def test_step_does_not_end_inside_open_fence() -> None:
    assert not ends_step("Code:\n```python\nx = 1.\n\n", "\n\n")
    assert ends_step("Code:\n```python\nx = 1\n```\nDone.\n\n", "\n\n")
    assert not ends_step("Math $$ a = b.\n\n", "\n\n")


def test_final_answer_needs_balanced_box() -> None:
    assert contains_final_answer(r"So the answer is \boxed{42}.")
    assert contains_final_answer(r"\boxed{\frac{1}{2}}")
    assert not contains_final_answer(r"\boxed{\frac{1}{2}")
    assert not contains_final_answer("the answer is 42")
