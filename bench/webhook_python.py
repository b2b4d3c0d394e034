"""stripe-python's `Webhook.construct_event` (verify + parse) per event, on a
payload file written by the Rust bench: prints nanoseconds per event (median
of 7 repeats)."""
import json
import sys
import timeit

import stripe

case = json.load(open(sys.argv[1]))
body, header, secret = case["body"], case["header"], case["secret"]
# tolerance=None: the header's fixed timestamp is not "now"; the age check is one comparison.
event = stripe.Webhook.construct_event(body, header, secret, tolerance=None)
assert event["type"] == "reporting.report_run.succeeded"
number = 2000
runs = sorted(timeit.repeat(lambda: stripe.Webhook.construct_event(body, header, secret, tolerance=None),
                            number=number, repeat=7))
print(runs[3] / number * 1e9)
