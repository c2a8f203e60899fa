"""The SSE codec: WHATWG event-stream parsing under any chunking, and the encoder."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.sse import SSEDecoder, SSEEvent, SSEOverflow, encode_event

PROPERTY = settings(derandomize=True, max_examples=150, deadline=None)


def decode(*chunks: bytes) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    events += decoder.flush()
    return events, decoder


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_one_event_per_blank_line() -> None:
    events, decoder = decode(b"data: one\n\ndata: two\n\n")
    assert events == [SSEEvent("message", b"one"), SSEEvent("message", b"two")]
    assert not decoder.truncated


def test_data_lines_join_with_lf_and_one_leading_space_is_dropped() -> None:
    events, _ = decode(b"data: a\ndata:b\ndata:  c\n\n")
    assert events == [SSEEvent("message", b"a\nb\n c")]


def test_event_id_and_retry_fields() -> None:
    events, decoder = decode(b"event: error\nid: 7\nretry: 1500\ndata: {}\n\ndata: x\n\n")
    assert events == [SSEEvent("error", b"{}", "7"), SSEEvent("message", b"x", "7")]
    assert decoder.retry == 1500


def test_retry_that_is_not_all_digits_is_ignored_and_id_with_nul_too() -> None:
    events, decoder = decode(b"retry: 10s\nid: a\x00b\ndata: x\n\n")
    assert decoder.retry is None
    assert events == [SSEEvent("message", b"x", "")]


def test_field_without_colon_has_an_empty_value() -> None:
    events, _ = decode(b"data\n\ndata\ndata\n\n")
    assert events == [SSEEvent("message", b""), SSEEvent("message", b"\n")]


def test_event_without_data_is_not_dispatched() -> None:
    events, _ = decode(b"event: ping\n\nid: 3\n\n")
    assert events == []


def test_comments_are_skipped() -> None:
    events, decoder = decode(b": keep-alive\n:\ndata: x\n: inside\n\n")
    assert events == [SSEEvent("message", b"x")]
    assert decoder.garbage_lines == 0


def test_unknown_fields_are_counted_as_garbage_and_ignored() -> None:
    events, decoder = decode(b'{"a": 1}\nnonsense\ndata: x\nfoo: bar\n\n')
    assert events == [SSEEvent("message", b"x")]
    assert decoder.garbage_lines == 3


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n", b"\r"])
def test_every_line_terminator(terminator: bytes) -> None:
    stream = b"event: e\ndata: a\ndata: b\n\ndata: c\n\n".replace(b"\n", terminator)
    events, _ = decode(stream)
    assert events == [SSEEvent("e", b"a\nb"), SSEEvent("message", b"c")]


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_terminator() -> None:
    events, _ = decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [SSEEvent("message", b"a\nb")]


def test_cr_at_a_chunk_end_followed_by_cr_is_two_terminators() -> None:
    events, _ = decode(b"data: a\r", b"\r")
    assert events == [SSEEvent("message", b"a")]


def test_a_split_utf8_character_survives() -> None:
    stream = "data: café ☕\n\n".encode()
    cut = stream.index("☕".encode()) + 1
    events, _ = decode(stream[:cut], stream[cut:])
    assert events[0].data.decode() == "café ☕"


def test_a_leading_bom_is_dropped_even_when_split() -> None:
    events, decoder = decode(b"\xef", b"\xbb", b"\xbfdata: x\n\n")
    assert events == [SSEEvent("message", b"x")]
    assert decoder.garbage_lines == 0


def test_a_bom_later_in_the_stream_is_not_dropped() -> None:
    events, decoder = decode(b"data: x\n\n\xef\xbb\xbfdata: y\n\n")
    assert events == [SSEEvent("message", b"x")]
    assert decoder.garbage_lines == 1  # the field is named "\ufeffdata"


def test_an_event_without_its_blank_line_is_dropped_and_reported() -> None:
    events, decoder = decode(b"data: a\n\ndata: [DONE]\n")
    assert events == [SSEEvent("message", b"a")]
    assert decoder.truncated


def test_an_unterminated_line_is_reported() -> None:
    _, decoder = decode(b"data: a\n\ndata: {")
    assert decoder.truncated


def test_a_trailing_comment_or_nothing_is_not_truncation() -> None:
    assert not decode(b"data: a\n\n: bye")[1].truncated
    assert not decode(b"")[1].truncated


def test_overlong_line_raises() -> None:
    decoder = SSEDecoder(max_pending_bytes=64)
    decoder.feed(b"data: " + b"x" * 40)
    with pytest.raises(SSEOverflow):
        decoder.feed(b"y" * 40)


def test_overlong_event_raises() -> None:
    decoder = SSEDecoder(max_pending_bytes=64)
    with pytest.raises(SSEOverflow):
        decoder.feed(b"data: 0123456789\n" * 8)


def test_encode_event() -> None:
    assert encode_event("ping", b'{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_encode_event_splits_multiline_data_into_data_lines() -> None:
    encoded = encode_event("x", b"a\nb\r\nc")
    assert encoded == b"event: x\ndata: a\ndata: b\ndata: c\n\n"
    assert decode(encoded)[0] == [SSEEvent("x", b"a\nb\nc")]


def test_encode_event_rejects_a_line_break_in_the_name() -> None:
    with pytest.raises(ValueError):
        encode_event("a\nb", b"{}")


def test_seeded_random_splits_of_a_mixed_stream() -> None:
    stream = "\ufeff: hi\r\nevent: a\rdata: é1\r\n\r\ndata: 2\n\ndata\n\n".encode()
    expected, _ = decode(stream)
    assert [e.data for e in expected] == ["é1".encode(), b"2", b""]
    rng = random.Random(7)
    for _ in range(200):
        cuts = [rng.randrange(len(stream) + 1) for _ in range(rng.randrange(1, 8))]
        assert decode(*split_at(stream, cuts))[0] == expected


SSE_LINES = st.lists(
    st.tuples(
        st.sampled_from(
            [
                b"",
                b"",
                b"data: x",
                b"data:y",
                b"data",
                b"event: e",
                b"id: 1",
                b"retry: 5",
                b": c",
                b"junk: 1",
                b"\xef\xbb\xbfdata: z",
                b"data: \xc3\xa9",
                b"data: [DONE]",
            ]
        ),
        st.sampled_from([b"\n", b"\r", b"\r\n"]),
    ),
    max_size=30,
).map(lambda lines: b"".join(content + end for content, end in lines))


@PROPERTY
@given(
    stream=st.one_of(SSE_LINES, st.binary(max_size=200)),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_events_do_not_depend_on_chunk_boundaries(stream: bytes, cuts: list[int]) -> None:
    whole_events, whole = decode(stream)
    split_events, split = decode(*split_at(stream, cuts))
    assert split_events == whole_events
    assert (split.garbage_lines, split.truncated, split.retry) == (
        whole.garbage_lines,
        whole.truncated,
        whole.retry,
    )
    byte_events, _ = decode(*(stream[i : i + 1] for i in range(len(stream))))
    assert byte_events == whole_events


EVENT_NAMES = st.text(
    st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=10,
)
DATA = st.binary(max_size=50).map(lambda data: data.replace(b"\r", b"").replace(b"\n", b""))


@PROPERTY
@given(
    events=st.lists(st.tuples(EVENT_NAMES, DATA), max_size=6),
    cuts=st.lists(st.integers(0, 600), max_size=10),
)
def test_encoded_events_decode_back_under_any_split(
    events: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_event(name, data) for name, data in events)
    decoded, decoder = decode(*split_at(stream, cuts))
    assert [(event.event, event.data) for event in decoded] == [
        (name, data) for name, data in events
    ]
    assert not decoder.truncated
