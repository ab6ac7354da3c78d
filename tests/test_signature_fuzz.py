"""Property tests: garbage and mutated SignedData only ever raise MoicaAuthError.

Kept apart from tests/test_signature.py so that the rest of the signature tests run even
where hypothesis is not installed.
"""

from __future__ import annotations

import base64
import functools

import pytest
from cryptography.hazmat.primitives import serialization

from moica_auth.exceptions import MoicaAuthError
from moica_auth.signature import verify_signature
from moica_auth.testing.softcard import SoftCard
from tests.signature_fixtures import CHALLENGE, NONCE, signing_card

pytest.importorskip("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st


def _settings(max_examples: int) -> settings:
    # No example database (nothing written into the checkout) and derandomized runs, so
    # the suite is reproducible; no deadline, because tests must not be timed.
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True)


@functools.cache
def _good_der() -> bytes:
    """A HiPKI-like SignedData from the shared soft card, with the chain carried too."""
    card = signing_card()
    answer = SoftCard(card).sign(CHALLENGE, nonce=NONCE, extra_certificates=card.chain)
    return base64.b64decode(answer["signature"])


@_settings(150)
@given(data=st.binary(max_size=600))
def test_random_bytes_only_raise_library_errors(data: bytes) -> None:
    with pytest.raises(MoicaAuthError):
        verify_signature(content=CHALLENGE, signature=data, signature_type="PKCS7")


@_settings(150)
@given(text=st.text(max_size=400))
def test_random_text_only_raises_library_errors(text: str) -> None:
    with pytest.raises(MoicaAuthError):
        verify_signature(content=CHALLENGE, signature=text, signature_type="PKCS7")


@_settings(300)
@given(
    mutations=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255), st.sampled_from("rid")),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_signed_data_only_raises_library_errors(
    mutations: list[tuple[int, int, str]],
) -> None:
    card = signing_card()
    der = bytearray(_good_der())
    for position, value, kind in mutations:
        index = position % (len(der) or 1)
        if kind == "r":
            der[index : index + 1] = bytes([value])
        elif kind == "i":
            der[index:index] = bytes([value])
        else:
            del der[index : index + 1]
    try:
        result = verify_signature(
            content=CHALLENGE,
            signature=bytes(der),
            signature_type="PKCS7",
            certificate=card.signing.certificate,
            expected_nonce=NONCE,
        )
    except MoicaAuthError:
        return
    # A mutation that still verifies can only have touched bytes that are neither signed
    # nor used (e.g. an unsigned length form); what it returns must be what was signed.
    assert result.signed_content == CHALLENGE
    assert result.nonce == NONCE
    assert result.certificate.public_bytes(serialization.Encoding.DER) == card.signing.cert_der()
