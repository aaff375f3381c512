import random
import re

from hypothesis import given
from hypothesis import strategies as st

from traffic.fingerprints import SharedPayments, Topics, flip, hamming, payment_fp, to_hex


@given(st.integers(0, 2**64 - 1), st.integers(0, 64), st.integers(0, 2**32))
def test_flip_changes_exactly_k_bits(fp, k, seed):
    assert hamming(to_hex(fp), to_hex(flip(fp, k, random.Random(seed)))) == k


def test_topic_samples_stay_near_a_centre_and_are_hex():
    rng = random.Random(1)
    topics = Topics(rng, n=5, max_flips=4)
    for _ in range(500):
        fp = topics.sample(rng)
        assert re.fullmatch(r"[0-9a-f]{16}", fp)
        assert min(hamming(fp, to_hex(c)) for c in topics.centres) <= 4


def test_payment_fingerprints_are_opaque_strings_shared_by_a_few():
    rng = random.Random(2)
    assert re.fullmatch(r"pay_[0-9a-f]{10}", payment_fp(rng))
    p = SharedPayments(rng, per_card=(2, 6), solo_share=0.2)
    fps = [p.next() for _ in range(600)]
    counts = sorted({f: fps.count(f) for f in fps}.values())
    assert counts[-1] <= 6 and 1 in counts and len(counts) < len(fps)
