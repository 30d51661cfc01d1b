"""Friendly pages in the product's name: what happened, what to do next, and the reference code. Jinja2
autoescapes everything, so nothing from a query string reaches the page unescaped."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from roster_shared.contracts import ResolveReason
from roster_shared.web import request_id_var
from sso_gateway.clever import CleverFailure

_env = Environment(
    loader=PackageLoader("sso_gateway", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    auto_reload=False,
)


class Failure(StrEnum):
    """Why a login ended on a problem page, besides Clever's (`clever.CleverFailure`) and roster-api's
    (`ResolveReason`) reasons, which have pages too."""

    ACCESS_DENIED = "access_denied"
    CLEVER_ERROR = "clever_error"
    STATE_INVALID = "state_invalid"
    RESTART_LOOP = "restart_loop"
    ROSTER_UNAVAILABLE = "roster_unavailable"
    MISCONFIGURED = "misconfigured"
    STORE_UNAVAILABLE = "store_unavailable"
    BAD_REQUEST = "bad_request"
    CONSOLE_ROLE = "console_role"  # a Clever user whom roster-api does not admit to the district console


@dataclass(frozen=True)
class Problem:
    status: int
    title: str
    message: str
    next_step: str


def _problems() -> dict[str, Problem]:
    """Keyed by the values of `Failure`, `CleverFailure` and `ResolveReason` (a test checks each has one)."""
    ask_admin = "Ask your teacher or your school's IT administrator, and give them the reference code below."
    return {
        Failure.ACCESS_DENIED: Problem(
            403,
            "Login cancelled",
            "Clever did not let {product} sign you in (the login was cancelled or not allowed).",
            "Choose Try again and allow {product} when Clever asks. If it keeps failing, ask your teacher.",
        ),
        Failure.CLEVER_ERROR: Problem(
            400,
            "Clever could not log you in",
            "Clever sent back an error instead of a login.",
            "Try again. If it keeps failing, ask your school's IT administrator.",
        ),
        Failure.STATE_INVALID: Problem(
            400,
            "This login link has expired",
            "This login page was already used, is too old, or was started in another browser.",
            "Choose Try again to start a fresh login from this browser.",
        ),
        Failure.RESTART_LOOP: Problem(
            400,
            "We could not finish logging you in from Clever",
            "Clever sent you here several times in a row without completing the login.",
            "Open {product} and choose Log in with Clever, or wait a minute and try the Clever icon again.",
        ),
        CleverFailure.REJECTED: Problem(
            400,
            "Clever did not accept this login",
            "The login from Clever had already been used or had expired.",
            "Choose Try again; you will not need to type your password again if you are still in Clever.",
        ),
        CleverFailure.UNAVAILABLE: Problem(
            503,
            "Clever is not responding",
            "We could not reach Clever to finish your login.",
            "Wait a minute and try again. If Clever itself is down, your school will know.",
        ),
        CleverFailure.BAD_RESPONSE: Problem(
            502,
            "Clever sent something we did not expect",
            "Clever answered, but without the information we need to find your account.",
            "Try again. If it keeps failing, tell {product} support the reference code or request id.",
        ),
        Failure.ROSTER_UNAVAILABLE: Problem(
            503,
            "{product} is having trouble",
            "We could not look up your {product} account right now.",
            "Wait a minute and try again. Your account is fine.",
        ),
        Failure.MISCONFIGURED: Problem(
            502,
            "{product} login is not set up correctly",
            "Our login service could not check your account because of a setup problem on our side.",
            "Please tell {product} support the request id below.",
        ),
        Failure.STORE_UNAVAILABLE: Problem(
            503,
            "{product} is having trouble",
            "Our login service cannot save your login right now.",
            "Wait a minute and try again.",
        ),
        Failure.BAD_REQUEST: Problem(
            400,
            "This login request is not valid",
            "The application that sent you here asked for something we cannot do.",
            "Go back to {product} and start again. If it keeps happening, tell {product} support.",
        ),
        ResolveReason.NO_ACCOUNT: Problem(
            403,
            "We couldn't find your {product} account",
            "You signed in to Clever, but your school has not given you a {product} account yet.",
            "Your school may not have added you to the class roster. " + ask_admin,
        ),
        ResolveReason.INACTIVE_ACCOUNT: Problem(
            403,
            "Your {product} account is turned off",
            "Your school's roster no longer lists you as active in {product}.",
            "If you should have access, " + ask_admin[0].lower() + ask_admin[1:],
        ),
        ResolveReason.PRODUCT_NOT_LICENSED: Problem(
            403,
            "Your school doesn't have {product}",
            "Your school district has not licensed {product}.",
            "If your class uses {product}, ask your school's IT administrator to contact {product}, "
            "and give them the reference code below.",
        ),
        ResolveReason.DISTRICT_NOT_LINKED: Problem(
            403,
            "Your school district isn't connected to {product} yet",
            "{product} does not know your district's Clever account yet.",
            "Ask your school's IT administrator to contact {product} support with the reference code below.",
        ),
        ResolveReason.AMBIGUOUS_EMAIL: Problem(
            403,
            "We found more than one {product} account for you",
            "Your school's roster has several people with your email address and no Clever ID.",
            "Ask your school's IT administrator to add Clever IDs to the roster. Reference code below.",
        ),
        ResolveReason.AMBIGUOUS_SIS_ID: Problem(
            403,
            "We found more than one {product} account for you",
            "Your school's roster has several people with your student or staff number and no Clever ID.",
            "Ask your school's IT administrator to fix the roster or add Clever IDs. Reference code below.",
        ),
        ResolveReason.ROLE_MISMATCH: Problem(
            403,
            "Your role doesn't match your school's roster",
            "Clever says you are a {role}, but your school's roster lists you differently.",
            ask_admin,
        ),
        Failure.CONSOLE_ROLE: Problem(
            403,
            "The district console is for district administrators",
            "Clever says you are a {role}; {product} is for your district's Clever administrators.",
            "If you need your district's rosters or imports, ask your district administrator. "
            "Support can look up the reference code below.",
        ),
        ResolveReason.CLEVER_ID_CONFLICT: Problem(
            403,
            "Your {product} account is linked to a different Clever account",
            "The {product} account that matches you is already connected to another Clever login.",
            ask_admin,
        ),
    }


PROBLEMS = _problems()


def render(template: str, *, status: int = 200, **context: object) -> HTMLResponse:
    body = _env.get_template(template).render(request_id=request_id_var.get(), **context)
    return HTMLResponse(body, status_code=status)


def problem_page(
    kind: str,
    *,
    product_name: str,
    retry_url: str | None,
    reference: str | None = None,
    role: str = "user",
) -> HTMLResponse:
    problem = PROBLEMS[kind]
    fill = {"product": product_name, "role": role.replace("_", " ")}
    return render(
        "error.html",
        status=problem.status,
        title=problem.title.format(**fill),
        product_name=product_name,
        message=problem.message.format(**fill),
        next_step=problem.next_step.format(**fill),
        reference=reference,
        retry_url=retry_url,
    )


def stylesheet() -> str:
    from importlib.resources import files

    return (files("sso_gateway") / "templates" / "gateway.css").read_text()
