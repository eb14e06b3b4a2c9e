from hub.ids import ascii_int


def test_only_ascii_digits_make_an_id() -> None:
    assert ascii_int("42") == 42
    assert ascii_int("³") is None and ascii_int("٣") is None  # digits to isdigit(), not to int()
    assert ascii_int("") is None and ascii_int("-3") is None and ascii_int("4x") is None
    assert ascii_int("-3", signed=True) == -3 and ascii_int("-", signed=True) is None
