"""Summing py-spy's raw stacks by what the innermost categorised frame was doing."""

from collections import Counter

from bench.profile_knock import categorise, frame_category, top_leaves

RAW = Counter(
    {
        "run (uvicorn/main.py:632);verify (matrix/xmatrix.py:90);"
        "crypto_sign_open (nacl/bindings/crypto_sign.py:103)": 3,
        "run (uvicorn/main.py:632);get_room_version (db/store.py:149)": 1,
    }
)


def test_frame_category_reads_the_frame_path():
    assert frame_category("crypto_sign_open (nacl/bindings/crypto_sign.py:103)").startswith(
        "ed25519"
    )
    assert frame_category("<module> (<frozen runpy>:198)") is None


def test_categorise_gives_each_sample_to_its_innermost_category():
    assert categorise(RAW) == [
        ("ed25519 verification (PyNaCl)", 75.0),
        ("the store (db/, SQLite)", 25.0),
    ]


def test_top_leaves_are_self_time():
    assert top_leaves(RAW, 1) == [("crypto_sign_open (nacl/bindings/crypto_sign.py:103)", 75.0)]
