from directory_sync.text import storable_text, unstorable_text


def test_nul_and_lone_surrogates_are_unstorable_and_shown_as_replacement_characters():
    text = "a\x00b\ud800c\udfffd"
    assert unstorable_text(text)
    assert storable_text(text) == "a\ufffdb\ufffdc\ufffdd"
    assert not unstorable_text(storable_text(text))


def test_ordinary_text_is_storable_and_kept_as_it_is():
    text = "Sara Al-Harbi سارة 😀"
    assert not unstorable_text(text)
    assert storable_text(text) is text
