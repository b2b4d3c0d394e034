#!/usr/bin/env python3
"""A corpus of Stripe-Signature cases with stripe-python's verdicts.

Each case is signed at run time with stripe.WebhookSignature.generate_signature_header
(or built from it), and judged by stripe.Webhook.construct_event(tolerance=300):
valid if any configured secret accepts it. Prints a JSON list of
{"name", "payload", "header" (or null), "secrets", "now", "valid", "reason"}.

usage: signature_corpus.py [COUNT]   (at least COUNT cases, default 240)
"""
import json
import random
import sys
import time

import stripe

SECRET = "whsec_test_secret_a1b2"
OTHER = "whsec_other_secret_9z8y"
TOLERANCE = 300


def event(i, rng):
    obj = {
        "id": "frr_%024d" % i,
        "object": "reporting.report_run",
        "status": rng.choice(["succeeded", "failed", "pending"]),
        "report_type": rng.choice(["balance.summary.1", "payouts.itemized.3"]),
        "note": rng.choice(["", "café", "日本語", "line\nbreak", "quote\"d", "x" * rng.randint(0, 3000)]),
    }
    body = {
        "id": "evt_%024d" % i,
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": 1700000000 + i,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "reporting.report_run." + obj["status"],
    }
    indent = rng.choice([None, 2])
    return json.dumps(body, indent=indent, ensure_ascii=rng.choice([True, False]))


def sign(payload, secret, t):
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=t)


def sig_of(header):
    return header.split("v1=", 1)[1]


def verdict(payload, header, secrets):
    reasons = []
    for secret in secrets:
        try:
            stripe.Webhook.construct_event(payload, header, secret, tolerance=TOLERANCE)
            return True, "valid"
        except stripe.SignatureVerificationError as err:
            reasons.append(str(err).split(".")[0])
    return False, reasons[0] if reasons else "no secret"


def cases(payload, now, rng):
    good = sign(payload, SECRET, now)
    sig = sig_of(good)
    flipped = payload[:10] + chr(ord(payload[10]) ^ 1) + payload[11:]
    yield "valid", payload, good, [SECRET]
    yield "tampered_body_one_byte", flipped, good, [SECRET]
    yield "tampered_body_appended_space", payload + " ", good, [SECRET]
    yield "wrong_secret", payload, sign(payload, OTHER, now), [SECRET]
    yield "age_299s", payload, sign(payload, SECRET, now - 299), [SECRET]
    yield "age_301s", payload, sign(payload, SECRET, now - 301), [SECRET]
    yield "age_one_day", payload, sign(payload, SECRET, now - 86400), [SECRET]
    yield "future_1000s", payload, sign(payload, SECRET, now + 1000), [SECRET]
    bad = "%064x" % rng.getrandbits(256)
    several = [bad, sig, "%064x" % rng.getrandbits(256)]
    rng.shuffle(several)
    yield "several_v1_one_valid", payload, "t=%d,%s" % (now, ",".join("v1=" + s for s in several)), [SECRET]
    yield "several_v1_none_valid", payload, "t=%d,v1=%s,v1=%s" % (now, bad, bad[::-1]), [SECRET]
    yield "v0_only", payload, "t=%d,v0=%s" % (now, sig), [SECRET]
    yield "v0_and_v1", payload, "t=%d,v0=%s,v1=%s" % (now, bad, sig), [SECRET]
    yield "empty_header", payload, "", [SECRET]
    yield "missing_header", payload, None, [SECRET]
    yield "garbage_header", payload, "i'm not even a real signature header", [SECRET]
    yield "t_empty", payload, "t=", [SECRET]
    yield "t_not_a_number", payload, "t=abc,v1=" + sig, [SECRET]
    yield "v1_without_value", payload, "v1,t=%d" % now, [SECRET]
    yield "no_timestamp", payload, "v1=" + sig, [SECRET]
    yield "duplicated_t_first_wins", payload, "t=%d,t=%d,v1=%s" % (now, now - 1000, sig), [SECRET]
    yield "duplicated_t_stale_first", payload, "t=%d,t=%d,v1=%s" % (now - 1000, now, sig), [SECRET]
    yield "duplicated_v1_same", payload, "t=%d,v1=%s,v1=%s" % (now, sig, sig), [SECRET]
    yield "non_hex_signature", payload, "t=%d,v1=%s" % (now, "z" * 64), [SECRET]
    yield "short_signature", payload, "t=%d,v1=%s" % (now, sig[:32]), [SECRET]
    yield "uppercase_hex", payload, "t=%d,v1=%s" % (now, sig.upper()), [SECRET]
    yield "space_after_comma", payload, "t=%d, v1=%s" % (now, sig), [SECRET]
    yield "space_before_t", payload, " t=%d,v1=%s" % (now, sig), [SECRET]
    yield "space_inside_t_value", payload, "t= %d ,v1=%s" % (now, sig), [SECRET]
    yield "trailing_space_on_signature", payload, "t=%d,v1=%s " % (now, sig), [SECRET]
    yield "empty_items", payload, ",,t=%d,,v1=%s," % (now, sig), [SECRET]
    yield "extra_equals_in_value", payload, "t=%d,v1=%s=extra" % (now, sig), [SECRET]
    yield "plus_sign_timestamp", payload, "t=+%d,v1=%s" % (now, sig), [SECRET]
    yield "leading_zero_timestamp", payload, "t=0%d,v1=%s" % (now, sig), [SECRET]
    yield "underscore_timestamp", payload, "t=%s_%s,v1=%s" % (str(now)[:4], str(now)[4:], sig), [SECRET]
    yield "rolled_secret_old_in_header_both_configured", payload, sign(payload, OTHER, now), [SECRET, OTHER]
    both = "t=%d,v1=%s,v1=%s" % (now, sig_of(sign(payload, OTHER, now)), sig)
    yield "header_for_two_secrets_one_configured", payload, both, [SECRET]
    yield "header_for_two_secrets_other_configured", payload, both, [OTHER]
    yield "unknown_scheme_keys_ignored", payload, "t=%d,v1=%s,x=1,v2=abc" % (now, sig), [SECRET]


def main():
    want = int(sys.argv[1]) if len(sys.argv) > 1 else 240
    rng = random.Random(20261129)
    now = int(time.time())
    # stripe-python judges the timestamp against time.time(): freeze it at
    # the `now` every case is signed at and replayed at, so a slow run (a
    # busy machine) cannot turn age_299s stale on one side only.
    time.time = lambda: float(now)
    out = []
    i = 0
    while len(out) < want:
        payload = event(i, rng)
        for name, body, header, secrets in cases(payload, now, rng):
            valid, reason = verdict(body, header, secrets)
            out.append({"name": name, "payload": body, "header": header, "secrets": secrets,
                        "now": now, "valid": valid, "reason": reason})
        i += 1
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
