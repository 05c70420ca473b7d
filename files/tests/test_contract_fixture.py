"""The dataset contract (fraud_demo_jobs.ieee_schema) checked against facts written down independently of it."""

from __future__ import annotations

# isort: off  (first-party or third-party depends on the ruff `src` setting; keep it last either way)
from fraud_demo_jobs import ieee_schema as S

# isort: on

# The contract's fingerprint names curated dataset versions: recorded before the generator was made to read the
# contract. It may only change together with the contract itself (and then every curated version changes).
FINGERPRINT = "af353dcc114fd8331d56dc91a1158e47c3fbe84deeefb436f748fc19a01295e6"


def test_fingerprint_is_unchanged():
    assert S.fingerprint() == FINGERPRINT
