"""Deterministic catalogue data: albums and their tracks, computed from a seed and an index.

Nothing is stored per item: album ``i`` is a pure function of ``(seed, i)``, so a catalogue
of millions of albums costs no memory and every server started with the same seed serves
the same bytes. ``updated_at`` grows with the index across ``[start, end)``, so an
``updated_since``/``updated_before`` filter is a contiguous index range (found by bisection).
"""

from __future__ import annotations

import bisect
import hashlib
import random
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX_DIGITS = 8  # the last 8 base62 digits of an id encode the index (62**8 > 2e14)
WORDS = ("midnight", "echo", "river", "neon", "golden", "static", "velvet", "paper", "signal", "harbor", "ember",
         "glass", "orbit", "winter", "cinder", "lumen", "atlas", "saffron", "quiet", "thunder", "meadow", "drift")
ALBUM_TYPES = ("album", "single", "compilation")


def b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out))


def b62_decode(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 62 + B62.index(ch)
    return n


def parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc)


class Catalogue:
    """``albums`` albums with ``updated_at`` spread evenly over ``[start, end)``."""

    def __init__(self, *, seed: int = 42, albums: int = 40, start: str = "2024-01-01T00:00:00+00:00",
                 end: str = "2024-01-03T00:00:00+00:00", max_tracks: int = 12) -> None:
        self.seed, self.size, self.max_tracks = seed, albums, max_tracks
        self.start, self.end = parse_ts(start), parse_ts(end)
        self._span_us = int((self.end - self.start) / timedelta(microseconds=1))
        self.album = lru_cache(maxsize=8192)(self._album)
        self.tracks = lru_cache(maxsize=1024)(self._tracks)

    def _hash_id(self, kind: str, i: int) -> str:
        h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{kind}:{i}".encode(), digest_size=10).digest(), "big")
        return b62(h, 22 - _INDEX_DIGITS) + b62(i, _INDEX_DIGITS)

    def updated_at(self, i: int) -> datetime:
        return self.start + timedelta(microseconds=(i * self._span_us) // max(self.size, 1))

    def index_of(self, album_id: str) -> int | None:
        """The index an album id encodes, or None for an id this catalogue never issued."""
        if len(album_id) != 22 or any(c not in B62 for c in album_id):
            return None
        i = b62_decode(album_id[-_INDEX_DIGITS:])
        return i if 0 <= i < self.size and self._hash_id("album", i) == album_id else None

    def window(self, since: datetime | None, before: datetime | None) -> tuple[int, int]:
        """Index range ``[lo, hi)`` of albums with ``since <= updated_at < before``."""
        lo = 0 if since is None else bisect.bisect_left(range(self.size), since, key=self.updated_at)
        hi = self.size if before is None else bisect.bisect_left(range(self.size), before, key=self.updated_at)
        return lo, max(lo, hi)

    def _album(self, i: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:album:{i}")
        album_id = self._hash_id("album", i)
        artist_n = rng.randrange(1000)
        artist_id = self._hash_id("artist", artist_n)
        updated = self.updated_at(i)
        return {
            "id": album_id,
            "name": " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(1, 3))),
            "album_type": rng.choice(ALBUM_TYPES),
            "artists": [{"id": artist_id, "name": f"Artist {artist_n}", "type": "artist",
                         "uri": f"spotify:artist:{artist_id}"}],
            "release_date": (updated - timedelta(days=rng.randint(0, 30))).date().isoformat(),
            "release_date_precision": "day",
            "total_tracks": 1 + rng.randrange(self.max_tracks),
            "available_markets": sorted(rng.sample(["DE", "FR", "GB", "SE", "US", "JP", "BR"], 3)),
            "updated_at": updated.isoformat().replace("+00:00", "Z"),
            "type": "album",
            "uri": f"spotify:album:{album_id}",
        }

    def _tracks(self, i: int) -> list[dict[str, Any]]:
        album = self.album(i)
        rng = random.Random(f"{self.seed}:tracks:{i}")
        out = []
        for n in range(album["total_tracks"]):
            track_id = self._hash_id("track", i * 100 + n)
            out.append({
                "id": track_id,
                "album_id": album["id"],
                "name": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))).capitalize(),
                "track_number": n + 1,
                "disc_number": 1,
                "duration_ms": rng.randint(90_000, 420_000),
                "explicit": rng.random() < 0.1,
                "artists": album["artists"],
                "updated_at": album["updated_at"],
                "type": "track",
                "uri": f"spotify:track:{track_id}",
            })
        return out
