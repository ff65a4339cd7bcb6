"""Test signing keys: an RSA key made with the openssl command line and the
matching public JWKS, so tests never depend on committed key material."""
import base64
import json
import os
import subprocess
from pathlib import Path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_rsa_key(directory: Path, kid: str = "test-key-1"):
    """Writes DIR/<kid>.pem (private) and DIR/jwks.json; returns (pem, jwks)."""
    pem = directory / f"{kid}.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(pem)], check=True,
                   capture_output=True)
    out = subprocess.run(["openssl", "rsa", "-in", str(pem), "-noout", "-modulus"],
                         check=True, capture_output=True, text=True).stdout
    modulus = bytes.fromhex(out.strip().split("=", 1)[1])
    jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": b64url(modulus), "e": b64url((65537).to_bytes(3, "big"))}
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return pem, jwks


def add_oct_key(jwks: Path, kid: str = "test-hmac-1"):
    """Adds a fresh 32-byte shared secret as an oct JWK (alg HS256) to the
    JWKS file jwks; returns the secret. busgate loads it only for an issuer
    with allow_hs256 and skips it otherwise."""
    secret = os.urandom(32)
    doc = json.loads(jwks.read_text())
    doc["keys"].append({"kty": "oct", "kid": kid, "use": "sig", "alg": "HS256",
                        "k": b64url(secret)})
    jwks.write_text(json.dumps(doc))
    return secret
