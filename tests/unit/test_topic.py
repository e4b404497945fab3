"""Unit tests for the topic-exchange trie (amqp_broker.broker.topic)."""

from __future__ import annotations

import functools
import random
import time

import pytest

from amqp_broker.broker.topic import MATCH_CACHE_SIZE, TopicTrie, split_words


def matching(pattern: str, routing_key: str) -> bool:
    """Whether a trie holding only ``pattern`` routes ``routing_key``."""
    trie = TopicTrie()
    trie.add(pattern, "q")
    return trie.match(routing_key) == {"q"}


# --- reference implementation ------------------------------------------------------------------


def ref_words(key: str) -> tuple[str, ...]:
    # RabbitMQ: "" is zero words; otherwise split on every dot, keeping empty words.
    return () if key == "" else tuple(key.split("."))


@functools.lru_cache(maxsize=None)
def ref_match_words(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return ref_match_words(rest, words) or (
            bool(words) and ref_match_words(pattern, words[1:])
        )
    if not words:
        return False
    if head == "*" or head == words[0]:
        return ref_match_words(rest, words[1:])
    return False


def ref_match(bindings: set[tuple[str, object]], routing_key: str) -> set:
    words = ref_words(routing_key)
    return {dest for pattern, dest in bindings if ref_match_words(ref_words(pattern), words)}


# --- splitting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, words",
    [
        ("", []),
        ("a", ["a"]),
        ("a.b", ["a", "b"]),
        (".", ["", ""]),
        ("a.", ["a", ""]),
        (".a", ["", "a"]),
        ("a..b", ["a", "", "b"]),
    ],
)
def test_split_words(key, words):
    assert split_words(key) == words


# --- semantics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, key, expected",
    [
        # literals
        ("a", "a", True),
        ("a", "b", False),
        ("a.b", "a.b", True),
        ("a.b", "a", False),
        ("a", "a.b", False),
        ("a.b.c", "a.b.c", True),
        # the empty routing key / pattern: zero words
        ("", "", True),
        ("", "a", False),
        ("", ".", False),
        ("a", "", False),
        ("*", "", False),
        ("#", "", True),
        ("#.#", "", True),
        ("*.#", "", False),
        ("#.*", "", False),
        # "*": exactly one word, possibly empty
        ("*", "a", True),
        ("*", "a.b", False),
        ("*", ".", False),
        ("*.*", "a.b", True),
        ("*.*", "a", False),
        ("*.*", "a.b.c", False),
        ("*.*", ".", True),
        ("*.*", "a.", True),
        ("*.*", ".a", True),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.", True),
        ("*.b", "a.b", True),
        ("*.b", "b", False),
        # "#": zero or more words
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("#", ".", True),
        ("#", "..", True),
        ("#.#", "a", True),
        ("#.#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.#", "a.b", True),
        ("a.#", "a.b.c", True),
        ("a.#", "a.", True),
        ("a.#", "b.a", False),
        ("a.#", "", False),
        ("#.a", "a", True),
        ("#.a", "x.a", True),
        ("#.a", "x.y.a", True),
        ("#.a", "a.x", False),
        ("#.a", "", False),
        ("#.a", "a.a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.b.b", True),
        ("a.#.b", "a", False),
        ("a.#.b", "b", False),
        ("a.#.b", "a.b.c", False),
        ("a.#.b", "x.a.b", False),
        ("#.a.#", "a", True),
        ("#.a.#", "x.a.y", True),
        ("#.a.#", "x.y", False),
        ("a.*.#", "a.b", True),
        ("a.*.#", "a.b.c.d", True),
        ("a.*.#", "a", False),
        ("a.*.#", "", False),
        ("#.*", "a", True),
        ("#.*", "a.b.c", True),
        ("*.#.*", "a", False),
        ("*.#.*", "a.b", True),
        ("*.#.*", "a.b.c.d", True),
        ("#.#.a.#.#", "x.a", True),
        ("#.#.a.#.#", "x.b", False),
        # empty words are words like any other
        ("a..b", "a..b", True),
        ("a..b", "a.b", False),
        ("a.*.b", "a..b", True),
        ("a.#.b", "a..b", True),
        ("a.#.b", "a...b", True),
        (".", ".", True),
        (".", "", False),
        # wildcard characters inside words, or as literal routing-key words, are plain text
        ("a*", "a*", True),
        ("a*", "ab", False),
        ("a#", "a", False),
        ("*", "*", True),
        ("*", "#", True),
        ("a", "*", False),
        ("a", "#", False),
        ("#", "#", True),
        # not a prefix match
        ("a.b", "a.b.c", False),
        ("ab", "a", False),
        # unicode words
        ("é.*", "é.ü", True),
        ("é.*", "e.ü", False),
    ],
)
def test_semantics(pattern, key, expected):
    assert matching(pattern, key) is expected
    assert ref_match_words(ref_words(pattern), ref_words(key)) is expected  # the reference agrees


def test_same_pattern_two_destinations_yields_both():
    trie = TopicTrie()
    trie.add("a.*", "q1")
    trie.add("a.*", "q2")
    trie.add("a.b", "q3")
    assert trie.match("a.b") == {"q1", "q2", "q3"}
    assert trie.match("a.c") == {"q1", "q2"}
    trie.remove("a.*", "q1")
    assert trie.match("a.b") == {"q2", "q3"}


def test_destination_reported_once_when_several_patterns_match():
    trie = TopicTrie()
    for pattern in ("#", "a.#", "*.b", "a.b", "#.b", "#.#"):
        trie.add(pattern, "q")
    assert trie.match("a.b") == {"q"}
    assert len(trie) == 6


def test_destinations_are_arbitrary_hashables():
    trie = TopicTrie()
    dests = [("queue", "vhost", "q"), 42, frozenset({1}), None]
    for dest in dests:
        trie.add("x.#", dest)
    assert trie.match("x.y") == set(dests)


# --- bookkeeping ---------------------------------------------------------------------------------


def test_add_is_idempotent_and_len_counts_pairs():
    trie = TopicTrie()
    assert len(trie) == 0
    trie.add("a.b", "q")
    trie.add("a.b", "q")
    assert len(trie) == 1
    trie.add("a.b", "r")
    trie.add("a.*", "q")
    assert len(trie) == 3


def test_remove_absent_is_silent():
    trie = TopicTrie()
    trie.remove("a.b", "q")  # nothing at all
    trie.add("a.b", "q")
    trie.remove("a.b", "other")  # wrong destination
    trie.remove("a", "q")  # prefix node without the binding
    trie.remove("a.b.c", "q")  # path runs out
    trie.remove("a.*", "q")
    trie.remove("#", "q")
    assert len(trie) == 1
    assert trie.match("a.b") == {"q"}


def test_remove_prunes_empty_nodes():
    trie = TopicTrie()
    patterns = ["a.b.c", "a.b", "a.*.#", "#", "#.x.#", "", "a..b", "*.*.*"]
    for pattern in patterns:
        trie.add(pattern, "q1")
        trie.add(pattern, "q2")
    for pattern in reversed(patterns):
        trie.remove(pattern, "q1")
        trie.remove(pattern, "q2")
    assert len(trie) == 0
    assert trie._root.is_empty()
    assert trie.match("a.b.c") == set()


def test_remove_keeps_sibling_and_descendant_bindings():
    trie = TopicTrie()
    trie.add("a", "q1")
    trie.add("a.b", "q2")
    trie.add("a.#", "q3")
    trie.remove("a", "q1")
    assert trie.match("a") == {"q3"}
    assert trie.match("a.b") == {"q2", "q3"}
    trie.remove("a.b", "q2")
    assert trie.match("a.b") == {"q3"}
    trie.remove("a.#", "q3")
    assert trie._root.is_empty()


def test_match_result_is_read_only():
    trie = TopicTrie()
    trie.add("a", "q")
    assert isinstance(trie.match("a"), frozenset)
    assert isinstance(trie.match("zzz"), frozenset)


# --- cache ---------------------------------------------------------------------------------------


def test_cache_hit_returns_the_same_object():
    trie = TopicTrie()
    trie.add("a.*", "q")
    first = trie.match("a.b")
    assert trie.match("a.b") is first


def test_cache_invalidated_by_add_and_remove():
    trie = TopicTrie()
    trie.add("a.*", "q1")
    assert trie.match("a.b") == {"q1"}
    trie.add("#", "q2")
    assert trie.match("a.b") == {"q1", "q2"}
    trie.remove("a.*", "q1")
    assert trie.match("a.b") == {"q2"}
    trie.remove("#", "q2")
    assert trie.match("a.b") == set()


def test_cache_is_bounded():
    trie = TopicTrie()
    trie.add("#", "q")
    for i in range(MATCH_CACHE_SIZE * 2 + 17):
        assert trie.match(f"k{i}") == {"q"}
        assert len(trie._cache) <= MATCH_CACHE_SIZE


# --- performance guard ---------------------------------------------------------------------------


def test_many_hashes_do_not_blow_up():
    # Without memoising (node, word index) states this is ~C(32, 8) = 10^7 paths per match.
    trie = TopicTrie()
    trie.add(".".join(["#"] * 8 + ["x"]), "q")
    trie.add(".".join(["#", "a"] * 8 + ["#"]), "r")
    key = ".".join(["a"] * 24)
    start = time.perf_counter()
    assert trie.match(key) == {"r"}
    assert trie.match(key + ".x") == {"q", "r"}
    assert trie.match(key + ".y") == {"r"}
    assert time.perf_counter() - start < 1.0


# --- property test against the reference ---------------------------------------------------------

PATTERN_WORDS = ["a", "b", "c", "", "*", "#"]
KEY_WORDS = ["a", "b", "c", "", "*", "#"]


def random_key(rng: random.Random, alphabet: list[str], max_words: int) -> str:
    n = rng.randint(0, max_words)
    return ".".join(rng.choice(alphabet) for _ in range(n))


def test_matches_reference_on_random_patterns_and_keys():
    rng = random.Random(20240601)
    trie = TopicTrie()
    bindings: set[tuple[str, object]] = set()
    for _ in range(400):
        pattern = random_key(rng, PATTERN_WORDS, 5)
        dest = f"q{rng.randrange(60)}"
        trie.add(pattern, dest)
        bindings.add((pattern, dest))
    assert len(trie) == len(bindings)
    keys = [random_key(rng, KEY_WORDS, 6) for _ in range(3000)]
    for key in keys:
        assert trie.match(key) == ref_match(bindings, key), key
    for key in keys[:500]:  # again, from the cache
        assert trie.match(key) == ref_match(bindings, key), key


def test_matches_reference_under_random_adds_and_removes():
    rng = random.Random(7)
    trie = TopicTrie()
    bindings: set[tuple[str, object]] = set()
    keys = [random_key(rng, KEY_WORDS, 5) for _ in range(40)]
    for step in range(2000):
        pattern = random_key(rng, PATTERN_WORDS, 4)
        dest = f"q{rng.randrange(5)}"
        if rng.random() < 0.45 and bindings:
            pattern, dest = rng.choice(sorted(bindings, key=repr))
            trie.remove(pattern, dest)
            bindings.discard((pattern, dest))
        elif rng.random() < 0.1:
            trie.remove(pattern, dest)  # probably absent
            bindings.discard((pattern, dest))
        else:
            trie.add(pattern, dest)
            bindings.add((pattern, dest))
        assert len(trie) == len(bindings)
        key = rng.choice(keys)
        assert trie.match(key) == ref_match(bindings, key), (step, key)
    for pattern, dest in list(bindings):
        trie.remove(pattern, dest)
    assert len(trie) == 0
    assert trie._root.is_empty()
