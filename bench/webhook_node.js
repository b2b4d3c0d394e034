// stripe-node's webhooks.constructEvent (verify + parse) per event, on a
// payload file written by the Rust bench: prints nanoseconds per event
// (median of 7 repeats).
const fs = require('fs');
const Stripe = require('stripe');

const kase = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const stripe = new Stripe('sk_test_unused');
// The header's fixed timestamp is not "now": a tolerance wide enough to skip the age check.
const tolerance = 1e12;
const once = () => stripe.webhooks.constructEvent(kase.body, kase.header, kase.secret, tolerance);
if (once().type !== 'reporting.report_run.succeeded') throw new Error('wrong event');
const number = 5000;
const runs = [];
for (let r = 0; r < 7; r++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < number; i++) once();
  runs.push(Number(process.hrtime.bigint() - start) / number);
}
runs.sort((a, b) => a - b);
console.log(runs[3]);
