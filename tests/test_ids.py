from hub.ids import ascii_int


def test_only_ascii_digits_make_an_id() -> None:
    assert ascii_int("42") == 42
    assert ascii_int("³") is None and ascii_int("٣") is None  # digits to isdigit(), not to int()
    assert ascii_int("") is None and ascii_int("-3") is None and ascii_int("4x") is None
    assert ascii_int("-3", signed=True) == -3 and ascii_int("-", signed=True) is None


def test_a_number_sqlite_cannot_hold_is_no_id() -> None:
    assert ascii_int(str(2**63 - 1)) == 2**63 - 1
    assert ascii_int(str(2**63)) is None and ascii_int("999999999999999999999999999999") is None
    assert ascii_int(str(-(2**63) - 1), signed=True) is None
