"""Single sign-on throughput: certificate logins per second, on file keys and on SoftHSM2,
beside the floor they stand on (JSON on stdout).

One ``login`` is everything the provider does for an official who logs in with the USB key
and is sent back to an office application, through the real Flask application in-process
(Flask's test client: no sockets, so the figure is the provider's own work):
GET /sso/login (a challenge) → POST /sso/challenge (the official's tool fetches it) →
POST /sso/challenge/answer (signature check, certificate chain, revocation status from ca/'s
store, account lookup) → POST /sso/login (the session, an audit event) → GET /oauth/authorize
(a code) → POST /oauth/token (PKCE, access token, the ES256 ID token signed through hsm's
Signer). The official's own signature (a software P-256 key here, a USB key in life) is made
inside the loop too; it costs ~0.05 ms.

Parts measured on their own in the same run: ``verify`` (answer_challenge alone: the
certificate checks and the revocation look-up), ``id_token`` (TokenKeys.sign alone) and the
peer ``es256_floor``: bare ES256 sign + verify through the same Signer (sign on the key store
in use, verify in software), the least any login with one ID token and one login signature
can cost.

  .venv/bin/python bench/sso.py            # full size (docs/PERFORMANCE.md)
  .venv/bin/python bench/sso.py --smoke    # tiny, for CI
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("GOVPKI_KEY_PASSPHRASE", "bench-passphrase")

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402


def _setup(base: Path, keys: str) -> tuple[Any, Any, Any, Any]:
    """A demo PKI on SQLite with an official, an account and a certificate; the app."""
    from apps.sso import clients
    from tests import softhsm
    from tests.apps.sso.conftest import make_app, make_person
    from tests.conftest import TEST_PIN, TEST_SO_PIN, build_pki
    from tests.ra.conftest import ra_ready

    token = None
    if keys == "softhsm":
        if not softhsm.softhsm_available():
            return None, None, None, None
        softhsm.init_softhsm(base / "softhsm")
        softhsm.init_token("bench-sso", TEST_PIN, TEST_SO_PIN)
        token = {"module": softhsm.SOFTHSM_MODULE, "label": "bench-sso", "pin": TEST_PIN}
    home = base / f"home-{keys}"
    pki = ra_ready(build_pki(home, f"sqlite:///{home}/govpki.sqlite3", keys, token))
    person = make_person(pki)
    registered, secret = clients.add_client(
        pki.ctx.sessions, "bench", "基准应用", redirect_uris=["https://app.example/cb"])
    return pki, make_app(pki), person, (registered, secret)


def _login(client: Any, person: Any, registered: Any, secret: str) -> None:
    from tests.apps.sso.conftest import (
        authorize_url,
        challenge_of,
        code_from,
        csrf_of,
        pkce,
        sign_answer,
    )

    html = client.get("/sso/login").get_data(as_text=True)
    challenge_id, code = challenge_of(html)
    answered = sign_answer(client, person.key, person.certificate, code)
    assert answered.status_code == 200, answered.get_data(as_text=True)
    done = client.post("/sso/login", data={"csrf_token": csrf_of(html),
                                           "method": "signed-challenge",
                                           "challenge": challenge_id})
    assert done.status_code == 303
    verifier, challenge = pkce()
    reply = client.get(authorize_url(registered.client_id, registered.redirect_uris[0],
                                     challenge))
    auth = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
    token = client.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code_from(reply.headers["Location"]),
        "code_verifier": verifier, "redirect_uri": registered.redirect_uris[0]},
        headers={"Authorization": f"Basic {auth}"})
    assert token.status_code == 200 and "id_token" in token.get_json()


def _rate(fn: Any, count: int) -> dict[str, float]:
    fn()  # warm
    times = []
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    times.sort()
    return {"per_second": round(count / total, 1),
            "p50_ms": round(statistics.median(times) * 1000, 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 2),
            "count": count}


def measure(keys: str, base: Path, count: int) -> dict[str, Any] | None:
    from apps.sso.cert_login import ChallengeAnswer, answer_challenge, new_challenge
    from apps.sso.config import SsoConfig
    from apps.sso.keys import TokenKeys
    from hsm.challenge import login_signed_data

    pki, app, person, reg = _setup(base, keys)
    if pki is None:
        return None
    registered, secret = reg
    config = SsoConfig(issuer="http://localhost", cookie_secure=False)
    token_keys = TokenKeys(pki.ctx)
    record, signer = token_keys.current()
    der = person.certificate.public_bytes(Encoding.DER)

    def one_login() -> None:
        _login(app.test_client(), person, registered, secret)

    def verify_only() -> None:
        challenge = new_challenge(pki.ctx, config, "bench-browser", client="bench")
        data = login_signed_data("http://localhost", challenge.nonce,
                                 int(challenge.expires_at.timestamp()))
        signature = person.key.sign(data, ec.ECDSA(hashes.SHA256()))
        answer_challenge(pki.ctx, config, ChallengeAnswer(
            challenge.code.replace("-", ""), der, signature), origin="http://localhost",
            client="bench")

    claims = {"iss": "http://localhost", "sub": "bench", "aud": "app", "iat": 1, "exp": 2}

    def id_token() -> None:
        token_keys.sign(claims)

    public = signer.public_key()

    def floor() -> None:
        signature = signer.sign(b"x" * 200, hashes.SHA256())
        public.verify(signature, b"x" * 200, ec.ECDSA(hashes.SHA256()))

    result = {"keys": keys, "key_uri_scheme": record.key_uri.split(":")[0],
              "login": _rate(one_login, count), "verify": _rate(verify_only, count),
              "id_token": _rate(id_token, count * 4), "es256_floor": _rate(floor, count * 4)}
    result["login_over_floor"] = round(result["login"]["per_second"]
                                       / result["es256_floor"]["per_second"], 4)
    pki.ctx.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--count", type=int, default=200, help="logins per key store")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    count = 3 if args.smoke else args.count
    results: dict[str, Any] = {"benchmark": "sso", "smoke": args.smoke,
                               "python": platform.python_version(), "cpus": os.cpu_count(),
                               "runs": []}
    with tempfile.TemporaryDirectory(prefix="govpki-bench-sso-") as tmp:
        for keys in ("file", "softhsm"):
            run = measure(keys, Path(tmp), count)
            if run is not None:
                results["runs"].append(run)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
