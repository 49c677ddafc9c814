"""Sign-in and access: users, organisations and roles, sessions with CSRF, API tokens, login rate limit, SSO.

The service functions take a `sqlalchemy.Connection` and are shared by the CLI, the REST API and the pages;
the FastAPI dependencies read `request.app.state.engine` and `.settings`."""

from tallybook.errors import AccessError, InvalidCredentials, LoginThrottled
from tallybook.web.auth.deps import (
    api_principal,
    csrf_token,
    page_principal,
    require,
    require_page,
    verify_csrf,
)
from tallybook.web.auth.login import authenticate
from tallybook.web.auth.roles import ROLES, Principal, Role
from tallybook.web.auth.sessions import COOKIE, end_session, start_session, switch_org
from tallybook.web.auth.tokens import create_token, list_tokens, revoke_token
from tallybook.web.auth.users import (
    add_member,
    create_first_admin,
    create_user,
    list_members,
    remove_member,
    set_role,
    setup_needed,
    user_orgs,
)

__all__ = [
    "COOKIE", "ROLES", "AccessError", "InvalidCredentials", "LoginThrottled", "Principal", "Role", "add_member",
    "api_principal", "authenticate", "create_first_admin", "create_token", "create_user", "csrf_token",
    "end_session", "list_members", "list_tokens", "page_principal", "remove_member", "require", "require_page",
    "revoke_token", "set_role", "setup_needed", "start_session", "switch_org", "user_orgs", "verify_csrf",
]
