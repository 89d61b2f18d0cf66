"""useapi.net emulator's auth and linked Runway accounts: tokens, ``/accounts``, ``maxJobs``, plan credits.

Every token is its own user with one default account (see ``useapi.py``); the
account picked by ``?email=`` scopes uploads, listings and creates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox.core import accepts, account_label, bearer_token
from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi_records import DEFAULT_MAX_JOBS, PROVIDER, Account, user_id_for
from lipbatch.sandbox.useapi_requests import BadRequest, check_max_jobs, json_error, read_body

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox

UNLIMITED_PLAN_CREDITS = 1_000_000


class Accounts:
    """Auth and accounts (a mixin of ``useapi.Emulator``)."""

    sandbox: Sandbox
    accounts: dict[str, dict[str, Account]]

    def token(self, request: Request) -> str | None:
        token = bearer_token(request)
        return token if token and accepts(self.sandbox, token) else None

    def accounts_of(self, token: str) -> dict[str, Account]:
        owner = account_label(token)
        accounts = self.accounts.get(owner)
        if accounts is None:
            uid = user_id_for(token)
            default = Account(f"runway-{uid}@example.com", uid, owner=owner)
            accounts = self.accounts[owner] = {default.email: default}
        return accounts

    def pick_account(self, request: Request) -> Account:
        """The account named by ``?email=``, or the only one; 400 when ambiguous or unknown."""
        accounts = self.accounts_of(request.state.token)
        email = request.query_params.get("email")
        if email:
            if email not in accounts:
                raise BadRequest(f"Runway account {email} is not configured, use POST /accounts/{email}")
            return accounts[email]
        if len(accounts) > 1:
            raise BadRequest("Parameter email is required when multiple Runway accounts are configured")
        return next(iter(accounts.values()))

    def max_jobs(self, account: Account) -> int:
        return account.max_jobs or self.sandbox.config.max_jobs or DEFAULT_MAX_JOBS

    def _account_json(self, account: Account) -> dict[str, Any]:
        return {"email": account.email, "password": "********", "maxJobs": self.max_jobs(account),
                "jwt": {"token": "<sandbox>", "exp": self.sandbox.epoch() + 30 * 86400,
                        "iat": self.sandbox.epoch(), "id": account.user_id}}

    async def list_accounts(self, request: Request) -> Response:
        accounts = self.accounts_of(request.state.token)
        return JSONResponse({email: self._account_json(acc) for email, acc in accounts.items()})

    async def account(self, request: Request) -> Response:
        accounts = self.accounts_of(request.state.token)
        email = request.path_params["email"]
        if request.method == "GET":
            if email not in accounts:
                return json_error(404, "Configuration not found. To create configuration use POST /accounts/email.")
            return JSONResponse(self._account_json(accounts[email]))
        body = await read_body(request)
        for name in ("email", "password", "maxJobs"):
            if body.get(name) in (None, ""):
                raise BadRequest(f"Parameter {name} is required")
        if body["email"] != email:
            raise BadRequest("Parameter email must match the email in the URL path")
        max_jobs = check_max_jobs(body)
        uid = user_id_for(request.state.token)
        accounts[email] = Account(email, uid, max_jobs, account_label(request.state.token))
        return JSONResponse(self._account_json(accounts[email]))

    def features(self, account: Account) -> dict[str, Any]:
        credits = self.sandbox.config.credits
        return {"storageGB": 500,
                "numPlanCredits_permitted": UNLIMITED_PLAN_CREDITS if credits is None else int(credits),
                "numPlanCredits_used": math.ceil(self.sandbox.credits_used(PROVIDER, account.email))}
