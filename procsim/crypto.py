"""The crypto API's algorithm list (crypto/api.c crypto_alg_list): what the
reference VM's kernel build registers at boot, generic (C) implementations
built in, each self-tested at registration. Newest registration first, the
order crypto/proc.c walks the list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CryptoAlg:
    name: str
    driver: str
    priority: int
    type: str                 # the cra_type's name: shash, cipher, rng, kpp, ...
    blocksize: int = 0
    digestsize: int = 0       # shash
    seedsize: int = 0         # rng
    min_keysize: int = 0      # cipher
    max_keysize: int = 0
    module: str = "kernel"    # built in
    refcnt: int = 1


def _shash(name: str, priority: int, blocksize: int, digestsize: int) -> CryptoAlg:
    return CryptoAlg(name, f"{name}-generic", priority, "shash", blocksize, digestsize)


CRYPTO_ALGS: tuple[CryptoAlg, ...] = (
    CryptoAlg("ecdh-nist-p384", "ecdh-nist-p384-generic", 100, "kpp"),
    CryptoAlg("ecdh-nist-p256", "ecdh-nist-p256-generic", 100, "kpp"),
    CryptoAlg("ecdh-nist-p192", "ecdh-nist-p192-generic", 100, "kpp"),
    CryptoAlg("jitterentropy_rng", "jitterentropy_rng", 100, "rng"),
    CryptoAlg("stdrng", "drbg_nopr_hmac_sha512", 217, "rng"),
    _shash("xxhash64", 100, 32, 8),
    CryptoAlg("deflate", "deflate-generic", 0, "acomp"),
    CryptoAlg("aes", "aes-generic", 100, "cipher", blocksize=16, min_keysize=16, max_keysize=32),
    _shash("blake2b-512", 100, 128, 64),
    _shash("blake2b-384", 100, 128, 48),
    _shash("blake2b-256", 100, 128, 32),
    _shash("blake2b-160", 100, 128, 20),
    _shash("sha3-512", 0, 72, 64),
    _shash("sha3-384", 0, 104, 48),
    _shash("sha3-256", 0, 136, 32),
    _shash("sha3-224", 0, 144, 28),
    _shash("digest_null", 0, 1, 0),
    CryptoAlg("cipher_null", "cipher_null-generic", 0, "cipher", blocksize=1),
    CryptoAlg("rsa", "rsa-generic", 100, "akcipher"),
    CryptoAlg("dh", "dh-generic", 100, "kpp"),
)
