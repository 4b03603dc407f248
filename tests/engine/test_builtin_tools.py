"""The CLI's built-in tools: a calculator that only does arithmetic, and a BM25 search over a folder."""

import pytest

from hogwild_agents.tools.builtins import (
    MAX_EXPRESSION_CHARS,
    LocalCorpus,
    calculator,
    calculator_tool,
    search_tool,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(17 + 25) * 2", "84"),
        ("2 ** 10", "1024"),
        ("2 ^ 10", "1024"),
        ("-3 ** 2", "-9"),
        ("--4", "4"),
        ("10 / 4", "2.5"),
        ("10 / 2", "5"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("0.1 + 0.2", "0.3"),
        ("2 ** -1", "0.5"),
        ("12345678901234567890 * 10", "123456789012345678900"),
    ],
)
def test_calculator_evaluates_arithmetic(expression, expected):
    assert calculator(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hi')", "function call"),
        ("().__class__.__bases__", "attribute"),
        ("x + 1", "name 'x'"),
        ("abs(-1)", "function call"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("[1, 2]", "unsupported syntax List"),
        ("1 if 1 else 2", "unsupported syntax IfExp"),
        ("lambda: 1", "unsupported syntax Lambda"),
        ("1 < 2", "unsupported syntax Compare"),
        ("9 ** 9 ** 9", "digits"),
        ("10 ** 100000", "digits"),
        ("1.5 ** 100000", "digits"),
        ("(10 ** 999) * (10 ** 999)", "digits"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "zero cannot be raised"),
        ("(-8) ** 0.5", "not a real number"),
        ("", "empty expression"),
        ("2 +", "not a valid arithmetic expression"),
        ("1j * 2", "only numbers"),
    ],
)
def test_calculator_rejects_everything_but_bounded_arithmetic(expression, message):
    with pytest.raises(ValueError, match=message):
        calculator(expression)


def test_calculator_rejects_long_and_deeply_nested_input():
    with pytest.raises(ValueError, match="characters long"):
        calculator("1+" * MAX_EXPRESSION_CHARS + "1")
    # nesting as deep as the length limit allows parses and evaluates without hitting recursion limits
    assert calculator("(" * 140 + "-1" + ")" * 140) == "-1"
    assert calculator("-" * 250 + "1") == "1"


def test_calculator_never_calls_eval(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert calculator("6 * 7") == "42"


def test_calculator_tool_schema():
    tool = calculator_tool()
    assert tool.name == "calculator"
    assert tool.parameters["required"] == ["expression"]
    assert "arithmetic" in tool.description


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "lighthouse.md").write_text(
        "# The Old Harbour Lighthouse\n\nThe lighthouse has exactly 217 steps to the lamp room.\n\n"
        "It was painted red and white in 1931.\n"
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "bakery.txt").write_text(
        "The Corner Bakery sells 64 loaves of rye bread every morning."
    )
    (tmp_path / "ignored.py").write_text("lighthouse = 'not a document'")
    return tmp_path


def test_corpus_splits_paragraphs_of_txt_and_md_files_only(corpus_dir):
    corpus = LocalCorpus(corpus_dir)
    assert {p.source for p in corpus.passages} == {"lighthouse.md", "notes/bakery.txt"}
    assert len(corpus.passages) == 4


def test_search_ranks_the_matching_passage_first(corpus_dir):
    corpus = LocalCorpus(corpus_dir)
    hits = corpus.rank("how many steps does the lighthouse have", top_k=2)
    assert "217 steps" in hits[0][1].text
    assert hits[0][0] > hits[-1][0] or len(hits) == 1
    assert "rye" in corpus.rank("bread loaves")[0][1].text
    assert corpus.rank("zeppelin") == []


def test_search_tool_returns_passages_with_sources(corpus_dir):
    tool = search_tool(corpus_dir, top_k=1)
    assert tool.name == "search"
    assert tool.parameters["required"] == ["query"]
    text = tool.func(query="lighthouse steps")
    assert text.startswith("[lighthouse.md]") and "217" in text
    assert "No passage matches" in tool.func(query="zeppelin")


def test_long_paragraphs_are_split(tmp_path):
    (tmp_path / "long.txt").write_text(" ".join(f"Sentence number {i} is here." for i in range(100)))
    corpus = LocalCorpus(tmp_path, max_passage_chars=200)
    assert len(corpus.passages) > 5
    assert all(len(p.text) <= 200 for p in corpus.passages)


def test_missing_corpus_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        search_tool(tmp_path / "nope")
