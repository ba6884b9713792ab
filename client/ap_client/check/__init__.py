"""``ap-client check``: does an Action Provider behave as the Actions API spec and
Globus Flows expect?

checker.py runs the check groups in the order a flow drives a provider, one
module each: introspection, authentication, run_request, running_action
(status paths, release, resume, log and cancel while it runs), enumeration,
other_caller, completion (waiting, then cancel and release once completed),
unknown_action. outcomes.py lists the check ids; protocol.py and bodies.py
are what the groups share (the Actions API's routes and documents, bodies to
run with); spec.py is the bundled official spec as JSON Schema validators;
http.py is raw HTTP to one provider; report.py prints the results (text,
JSON, JUnit XML).
"""

from ap_client.check.checker import Checker, NeedBody
from ap_client.check.http import Unreachable
from ap_client.check.outcomes import CHECK_IDS, Outcome

__all__ = ["CHECK_IDS", "Checker", "NeedBody", "Outcome", "Unreachable"]
