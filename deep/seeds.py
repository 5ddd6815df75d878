"""Independent seeds for the separate random streams of a run, derived from one seed.

Each stream (network initialisation, batch order, augmentation of process r, ...) gets its own
seed from numpy's SeedSequence hashing of (seed, stream name, extra keys), so that streams never
share numbers, and two runs whose seeds differ by one share none either.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(seed: int, stream: str, *keys: int) -> int:
    """A 63-bit seed for `stream` of a run with seed `seed` (keys: e.g. the process rank)."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(stream.encode()), *map(int, keys)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])
