"""/proc/crypto (crypto/proc.c c_show): one block per registered algorithm,
the common lines, then the lines its type's show callback adds."""

from __future__ import annotations

from procsim.crypto import CRYPTO_ALGS, CryptoAlg
from procsim.procfs.context import Ctx


def _type_lines(alg: CryptoAlg) -> list[tuple[str, int]]:
    # each cra_type's show callback (crypto_shash_show, crypto_rng_show, ...)
    match alg.type:
        case "shash":
            return [("blocksize", alg.blocksize), ("digestsize", alg.digestsize)]
        case "rng":
            return [("seedsize", alg.seedsize)]
        case "cipher":  # c_show's CRYPTO_ALG_TYPE_CIPHER branch
            return [("blocksize", alg.blocksize), ("min keysize", alg.min_keysize),
                    ("max keysize", alg.max_keysize)]
    return []


def crypto(ctx: Ctx) -> bytes:
    out = []
    for alg in CRYPTO_ALGS:
        lines = [("name", alg.name), ("driver", alg.driver), ("module", alg.module),
                 ("priority", alg.priority), ("refcnt", alg.refcnt), ("selftest", "passed"),
                 ("internal", "no"), ("type", alg.type), *_type_lines(alg)]
        out.append("".join(f"{key:<12} : {value}\n" for key, value in lines) + "\n")
    return "".join(out).encode()
