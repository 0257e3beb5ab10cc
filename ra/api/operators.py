"""Operator accounts, their roles (三员分立, two-person rule) and their API tokens."""

from __future__ import annotations

from typing import Final

from ra import api_tokens, operators
from ra.api import serialise
from ra.api.http import Call, Reply, list_reply
from ra.api.spec import MAX_ID, USERNAME, Body, Field, Param, api_route

CREATE: Final = Body("OperatorCreate", (
    Field("username", "string", "Login name.", required=True, max_length=64),
    Field("org_code", "string", "Organisation of the account (an RA operator's scope is its "
          "subtree).", required=True, max_length=32),
    Field("role", "string", "The account's first role (policies/authz.yaml).", required=True,
          max_length=64),
    Field("display_name", "string", "Name shown in lists.", max_length=64),
    Field("official", "string", "Official identifier (required for the official role).",
          max_length=64)), "A new operator account.")
GRANT: Final = Body("RoleGrant", (
    Field("role", "string", "The role to add.", required=True, max_length=64),),
    "A role to add; it may wait for a second operator's approval.")
TOKEN: Final = Body("ApiTokenCreate", (
    Field("name", "string", "What the token is for (shown in lists).", required=True,
          max_length=64),
    Field("days", "integer", "Days until it expires (default: [ra] api_token_days).",
          minimum=1, maximum=api_tokens.MAX_DAYS)), "A new API token.")
ROLE: Final = Param("role", "path", "A role name.", max_length=64)
TOKEN_ID: Final = Param("token_id", "path", "The token's number.", "integer", minimum=1,
                        maximum=MAX_ID)


@api_route("GET", "/me", operation_id="whoAmI", summary="The operator this token acts for",
           tag="operators", responses={200: "Operator"})
def who_am_i(call: Call) -> Reply:
    """The calling operator with their active and pending roles: no permission needed."""
    return Reply(serialise.operator(call.operator))


@api_route("GET", "/operators", operation_id="listOperators", summary="Operators",
           tag="operators", responses={200: "OperatorList"})
def list_operators(call: Call) -> Reply:
    """Operator accounts the caller may see (operator.view), by user name."""
    return list_reply(operators.list_operators(call.ctx.sessions, call.operator),
                      serialise.operator)


@api_route("POST", "/operators", operation_id="createOperator", summary="Create an operator",
           tag="operators", body=CREATE, responses={201: "Operator"}, errors=(404, 409))
def create_operator(call: Call) -> Reply:
    """Create an account with its first role (operator.create on its organisation)."""
    b = call.body
    op = operators.add_operator(call.ctx.sessions, call.operator, b["username"],
                                org_code=b["org_code"], role=b["role"],
                                display_name=b.get("display_name"),
                                official_identifier=b.get("official"))
    return Reply(serialise.operator(op), 201)


@api_route("POST", "/operators/{username}/roles", operation_id="grantRole",
           summary="Add a role to an operator", tag="operators", params=(USERNAME,),
           body=GRANT, responses={200: "Operator"}, errors=(404, 409))
def grant_role(call: Call) -> Reply:
    """Add a role (operator.role.change). Roles that cannot be combined (三员分立) are
    refused; when policies/authz.yaml asks for it the role stays in ``pending_roles`` until a
    different operator approves it."""
    return Reply(serialise.operator(operators.grant_role(
        call.ctx.sessions, call.operator, call.path["username"], call.body["role"])))


@api_route("POST", "/operators/{username}/roles/{role}/approve", operation_id="approveRole",
           summary="Approve a pending role (two-person rule)", tag="operators",
           params=(USERNAME, ROLE), body=Body("RoleApprove", (), "No members.", optional=True),
           responses={200: "Operator"}, errors=(404, 409))
def approve_role(call: Call) -> Reply:
    """The second operator's approval of a pending role: never the granter's, never the
    account holder's own."""
    return Reply(serialise.operator(operators.approve_role(
        call.ctx.sessions, call.operator, call.path["username"], call.path["role"])))


@api_route("GET", "/operators/{username}/tokens", operation_id="listApiTokens",
           summary="An operator's API tokens", tag="operators", params=(USERNAME,),
           responses={200: "ApiTokenList"}, errors=(404,))
def list_tokens(call: Call) -> Reply:
    """One's own tokens, or anyone's with apitoken.manage (never the token itself)."""
    return list_reply(api_tokens.list_api_tokens(call.ctx, call.operator,
                                                 call.path["username"]), serialise.api_token)


@api_route("POST", "/operators/{username}/tokens", operation_id="createApiToken",
           summary="Create an API token", tag="operators", params=(USERNAME,), body=TOKEN,
           responses={201: "NewApiToken"}, errors=(404,))
def create_token(call: Call) -> Reply:
    """A new bearer token acting as the operator: for oneself, or for anyone with
    apitoken.manage. The token is in this answer once and never again."""
    days = call.body.get("days", call.config.api_token_days)
    token, record = api_tokens.create_api_token(call.ctx, call.operator,
                                                call.path["username"], call.body["name"],
                                                days=days)
    return Reply({**serialise.api_token(record), "token": token}, 201)


@api_route("DELETE", "/tokens/{token_id}", operation_id="revokeApiToken",
           summary="Revoke an API token", tag="operators", params=(TOKEN_ID,),
           responses={200: "ApiToken"}, errors=(404,))
def revoke_token(call: Call) -> Reply:
    """Revoke a token at once (one's own, or anyone's with apitoken.manage)."""
    return Reply(serialise.api_token(api_tokens.revoke_api_token(
        call.ctx, call.operator, call.path["token_id"])))
