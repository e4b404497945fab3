"""Topic-exchange matching: a trie of binding patterns, with RabbitMQ's semantics.

Routing keys and binding patterns are split on ``"."`` into words. In a pattern, ``*`` matches
exactly one word and ``#`` matches zero or more words; every other word matches itself only.
Words may be empty: ``"a..b"`` is the three words ``a``, ``""``, ``b``, and ``"a."`` is ``a``,
``""``.

The empty string is *zero* words, not one empty word, as in RabbitMQ: 3.x (Mnesia) splits with
``split_topic_key/1``, whose first clause maps ``<<>>`` to ``[]``, and current 4.x's
``rabbit_db_topic_exchange:split_topic_key_binary/1`` special-cases ``<<>>`` to ``[]`` before its
``binary:split(Key, <<".">>, [global])`` (which alone would give ``[<<>>]``); the AMQP 0-9-1 spec
says a topic routing key is "zero or more words". So a routing key ``""`` is matched by the
patterns ``""``, ``"#"``, ``"#.#"`` ..., and *not* by ``"*"``; a pattern ``""`` matches the
routing key ``""`` only. :func:`split_words` is the one place that decides this.

The trie is walked as a small NFA: a node reached through a ``#`` edge may also swallow one more
word and stay where it is. States ``(node, word index)`` below a ``#`` are memoised within one
match, so a pattern like ``"#.#.#.#.x"`` costs at most ``nodes x words`` steps instead of
exponentially many. Results are cached per routing key, because publishers tend to reuse a small
set of keys while the bindings change rarely.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

__all__ = ["TopicTrie", "split_words"]

# Why: a routing key is a shortstr (at most 255 bytes), so 4096 cached keys cost at most ~1 MiB
# of key text plus the result sets, while covering the working set of keys of any ordinary
# application; beyond that the workload is not repetitive and the cache would not help anyway.
MATCH_CACHE_SIZE: Final = 4096

# Why: the two wildcard words of the AMQP 0-9-1 topic exchange (spec, exchange type "topic").
STAR: Final = "*"
HASH: Final = "#"

# Why: a shared immutable empty result, so that a miss allocates nothing and callers get the
# same read-only type as for a hit.
_EMPTY: Final[frozenset] = frozenset()


def split_words(key: str) -> list[str]:
    """Split a routing key or binding pattern into words, the way RabbitMQ does.

    ``""`` is zero words; otherwise the key is split on every ``"."``, keeping empty words
    (``"a..b"`` -> ``["a", "", "b"]``, ``"."`` -> ``["", ""]``).
    """
    return key.split(".") if key else []


class _Node:
    """One trie node: the pattern prefix spelled by the path from the root."""

    __slots__ = ("children", "star", "hash", "destinations", "after_hash", "loops")

    def __init__(self, after_hash: bool, loops: bool = False) -> None:
        self.children: dict[str, _Node] = {}  # literal words
        self.star: _Node | None = None  # the "*" edge
        self.hash: _Node | None = None  # the "#" edge
        self.destinations: set[Hashable] = set()  # bindings whose pattern ends here
        # True when the path from the root crosses a "#" edge: only such nodes can be reached
        # with more than one word index, so only they need memoising during a match.
        self.after_hash = after_hash
        # True when this node is the target of a "#" edge: it may swallow further words and stay.
        self.loops = loops

    def is_empty(self) -> bool:
        """Whether the node holds no binding and leads nowhere (so it can be pruned)."""
        return not (self.destinations or self.children or self.star or self.hash)


class TopicTrie:
    """The bindings of one topic exchange, as a trie of pattern words.

    Destinations are arbitrary hashable objects (queue names, exchange objects, ...). The trie
    stores each ``(pattern, destination)`` pair once.
    """

    __slots__ = ("_root", "_count", "_cache")

    def __init__(self) -> None:
        """Create an empty trie."""
        self._root = _Node(after_hash=False)
        self._count = 0
        self._cache: dict[str, frozenset] = {}

    def __len__(self) -> int:
        """The number of distinct ``(pattern, destination)`` bindings."""
        return self._count

    def add(self, pattern: str, destination: Hashable) -> None:
        """Bind ``destination`` with ``pattern``; adding the same pair again changes nothing."""
        node = self._root
        for word in split_words(pattern):
            if word == HASH:
                child = node.hash
                if child is None:
                    child = node.hash = _Node(after_hash=True, loops=True)
            elif word == STAR:
                child = node.star
                if child is None:
                    child = node.star = _Node(after_hash=node.after_hash)
            else:
                child = node.children.get(word)
                if child is None:
                    child = node.children[word] = _Node(after_hash=node.after_hash)
            node = child
        if destination not in node.destinations:
            node.destinations.add(destination)
            self._count += 1
            self._cache.clear()

    def remove(self, pattern: str, destination: Hashable) -> None:
        """Unbind ``destination`` from ``pattern``; no error if it is not bound.

        Nodes left holding no binding and no children are pruned, so a trie that had bindings
        added and removed is as small as one that never had them.
        """
        node = self._root
        # (parent, word) for each step, to prune bottom-up afterwards
        path: list[tuple[_Node, str]] = []
        for word in split_words(pattern):
            if word == HASH:
                child = node.hash
            elif word == STAR:
                child = node.star
            else:
                child = node.children.get(word)
            if child is None:
                return
            path.append((node, word))
            node = child
        if destination not in node.destinations:
            return
        node.destinations.discard(destination)
        self._count -= 1
        self._cache.clear()
        for parent, word in reversed(path):
            if not node.is_empty():
                break
            if word == HASH:
                parent.hash = None
            elif word == STAR:
                parent.star = None
            else:
                del parent.children[word]
            node = parent

    def match(self, routing_key: str) -> frozenset:
        """The destinations whose pattern matches ``routing_key`` (each once).

        The result may be shared with the cache and with other callers: do not mutate it.
        """
        cache = self._cache
        result = cache.get(routing_key)
        if result is None:
            result = self._match(split_words(routing_key))
            if len(cache) >= MATCH_CACHE_SIZE:
                # Wholesale clearing is O(1) amortised and needs no recency bookkeeping on the
                # hit path; a working set that fits is rebuilt after one miss per key.
                cache.clear()
            cache[routing_key] = result
        return result

    def _match(self, words: list[str]) -> frozenset:
        """Walk the trie for ``words`` (uncached)."""
        n = len(words)
        found: set[Hashable] = set()
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            if node.after_hash:
                state = (id(node), i)
                if state in seen:
                    continue
                seen.add(state)
            if i == n:
                if node.destinations:
                    found |= node.destinations
            else:
                word = words[i]
                child = node.children.get(word)
                if child is not None:
                    push((child, i + 1))
                if node.star is not None:
                    push((node.star, i + 1))
            if node.hash is not None:
                # "#" matching zero words: carry on from the "#" node without consuming.
                push((node.hash, i))
            if i < n and node.loops:
                # "#" matching one more word: stay on this node and consume it.
                push((node, i + 1))
        return frozenset(found) if found else _EMPTY

