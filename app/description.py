"""The introspection document, built once with the library's data type."""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from globus_action_provider_tools.data_types import ActionProviderDescription


class Description:
    def __init__(self, scope: str, input_schema: dict[str, Any], config: dict[str, Any]):
        model = ActionProviderDescription(
            globus_auth_scope=scope,
            title="What Time Is It Right Now?",
            subtitle=(
                "From the makers of Philbert: "
                "Another exciting promotional tie-in for whattimeisitrightnow.com"
            ),
            description=(
                "Reports the current time at a UTC offset. Each action finishes "
                "at a random time and some fail, to show how an asynchronous "
                "Action Provider behaves."
            ),
            admin_contact="support@whattimeisrightnow.example",
            synchronous=False,
            input_schema=input_schema,
            api_version="1.0",
            keywords=["time", "whattimeisitnow", "productivity"],
            visible_to=list(config["VISIBLE_TO"]),
            runnable_by=list(config["RUNNABLE_BY"]),
            administered_by=list(config["ADMINISTERED_BY"]),
            maximum_deadline=config["MAXIMUM_DEADLINE"],
            log_supported=True,
        )
        document = json.loads(json.dumps(model.dict(), default=str))
        # The library serialises types as ["ACTION"]; the spec's enum is "Action".
        document["types"] = ["Action"]
        self.document = {k: v for k, v in document.items() if v is not None}
        self._body = json.dumps(self.document).encode()

    def response(self) -> Response:
        response = Response(self._body, mimetype="application/json")
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
