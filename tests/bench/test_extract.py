import pytest

from openparity.bench.extract import choice_letter, final_number, normalize_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She sells 9 eggs.\n#### 18", "18"),
        ("So 3 + 4 = 7. The answer is 1,234.", "1234"),
        ("Total: $18.00", "18"),
        ("We get -5 in the end", "-5"),
        ("答案是：42。", "42"),
        ("答案：４２", "42"),
        ("The final answer is \\boxed{12}", "12"),
        ("First 3, then 5, then 0.5", "0.5"),
        ("no digits here", None),
        ("The answer is 12. Check: 12 * 2 = 24", "12"),
    ],
)
def test_final_number(text, expected):
    assert final_number(text) == expected


def test_normalize_number():
    assert normalize_number("18.0") == "18"
    assert normalize_number("$1,000") == "1000"
    assert normalize_number("x") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: (B)", "B"),
        ("The answer is **C**", "C"),
        ("**D**", "D"),
        ("B. Paris is the capital", "B"),
        ("(A) because...", "A"),
        ("答案：B", "B"),
        ("答案是Ｃ。", "C"),
        ("我选 D", "D"),
        ("I think it is B", "B"),
        ("The correct option is A.", "A"),
        ("A", "A"),
        ("Let me think. Answer: c", "C"),
        ("I don't know", None),
        ("Both A and B look wrong, so the answer is D.", "D"),
    ],
)
def test_choice_letter(text, expected):
    assert choice_letter(text) == expected
