"""The benchmark execution's shape, shared by every variant (no imports: the OpenLLMetry venv reads it too).

One execution = 6 steps; each step makes one tool call, one evaluation and records token usage.
The agent's own work is nothing at all, so every figure is pure instrumentation overhead.
"""

AGENT = "invoice"
TRIGGER = "email"
STEPS = (
    ("fetch_email", "gmail"),
    ("classify", "custom_gpt"),
    ("extract_fields", "custom_gpt"),
    ("validate", "rules_engine"),
    ("lookup_customer", "salesforce"),
    ("send_reply", "gmail"),
)
EVALUATION = "accuracy"
SCORE = 0.95
MIN_SCORE = 0.90  # the default `min_evaluation_score` objective: 0.95 passes
TOKENS_IN, TOKENS_OUT = 120, 40
# What content capture records per step (record_input / record_output).
STEP_INPUT = {
    "from": "billing@acme.example",
    "subject": "Invoice INV-2031 for March",
    "lines": [{"sku": "A-100", "qty": 3, "price": 19.5}, {"sku": "B-200", "qty": 1, "price": 250.0}],
    "api_key": "not-a-real-key",
}
STEP_OUTPUT = {"invoice_id": "INV-2031", "total": 308.5, "currency": "EUR", "confidence": 0.95}
