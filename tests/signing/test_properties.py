"""Property tests: whatever arrives, the TSA answers with a well-formed TimeStampResp that is
either a rejection or a grant that verifies — never an exception (DESIGN.md: never a 500)."""

from __future__ import annotations

import hashlib

from asn1crypto import cms, tsp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.oids import POLICY_TSA
from signing.tsa import TimeStampAuthority
from tests.signing.helpers import OIDS, make_query, parse_reply

SETTINGS = settings(max_examples=300, deadline=None)
LENGTHS = {"sha256": 32, "sha384": 48, "sha512": 64}


def check_reply(tsa: TimeStampAuthority, query: bytes, reply_der: bytes) -> str:
    """The reply parses in full; a grant is a token that verifies for exactly this query."""
    reply = parse_reply(reply_der)
    status = reply["status"]["status"].native
    assert status in ("granted", "rejection")
    if status == "rejection":
        assert reply["time_stamp_token"].native is None
        assert len(reply["status"]["fail_info"].native) == 1
        return status
    request = tsp.TimeStampReq.load(query)
    sd = reply["time_stamp_token"]["content"]
    info = sd["encap_content_info"]["content"].parsed
    assert info["message_imprint"].dump() == request["message_imprint"].dump(force=True)
    assert info["nonce"].native == request["nonce"].native
    assert info["policy"].dotted == POLICY_TSA
    signer_info = sd["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
    econtent = sd["encap_content_info"]["content"].contents
    assert attrs["message_digest"] == hashlib.sha256(econtent).digest()
    to_be_signed = cms.CMSAttributes.load(b"\x31" + signer_info["signed_attrs"].dump()[1:]).dump()
    public_key = tsa.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signer_info["signature"].native, to_be_signed, ec.ECDSA(hashes.SHA256()))
    assert bool(sd["certificates"].native) == bool(request["cert_req"].native)
    return status


@SETTINGS
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(file_tsa: TimeStampAuthority, data: bytes) -> None:
    check_reply(file_tsa, data, file_tsa.respond(data))


queries = st.builds(
    make_query,
    data=st.binary(max_size=64),
    hash_name=st.sampled_from(sorted(OIDS)),
    nonce=st.none() | st.integers(min_value=-(2**600), max_value=2**600),
    cert_req=st.booleans(),
    policy=st.sampled_from([None, POLICY_TSA, "1.2.3.4", "2.999"]),
    extensions=st.booleans(),
    version=st.integers(min_value=0, max_value=300),
)


@SETTINGS
@given(queries)
def test_generated_queries_get_the_right_answer(file_tsa: TimeStampAuthority,
                                                query: bytes) -> None:
    """Structurally valid requests: granted exactly when RFC 3161 §2.4.1 and our policy allow."""
    request = tsp.TimeStampReq.load(query)
    algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
    nonce = request["nonce"].native
    policy = request["req_policy"].native
    acceptable = (request["version"].native == "v1"
                  and algorithm in LENGTHS
                  and policy in (None, POLICY_TSA)
                  and request["extensions"].native is None
                  and (nonce is None or abs(nonce).bit_length() <= 512))
    status = check_reply(file_tsa, query, file_tsa.respond(query))
    assert status == ("granted" if acceptable else "rejection")


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(1, 8)),
)


def mutate(query: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(query)
    for kind, position, value in steps:
        if not data:
            break
        i = position % len(data)
        if kind == "flip":
            data[i] ^= value
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data.insert(i, value)
        else:
            del data[i:i + value]
    return bytes(data)


@SETTINGS
@given(queries, st.lists(mutation, min_size=1, max_size=4))
def test_mutated_queries(file_tsa: TimeStampAuthority, query: bytes,
                         steps: list[tuple[str, int, int]]) -> None:
    mutated = mutate(query, steps)
    check_reply(file_tsa, mutated, file_tsa.respond(mutated))
