"""``ap-client check``: does an Action Provider behave as the Actions API spec and
Globus Flows expect?

Modules: spec (the bundled official spec, as JSON Schema validators), http
(one provider, raw HTTP), lifecycle (the checks, in the order a flow drives a
provider), report (text, JSON and JUnit XML).
"""

from ap_client.check.lifecycle import CHECK_IDS, Checker, NeedBody, Outcome, Unreachable

__all__ = ["CHECK_IDS", "Checker", "NeedBody", "Outcome", "Unreachable"]
