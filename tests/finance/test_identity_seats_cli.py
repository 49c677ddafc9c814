"""The finance team's files through the CLI: identity map, seat plans and seats, each checked whole
(a bad cell named by line and column, nothing applied) and idempotent."""

from __future__ import annotations

import pytest

from tests.cli.helpers import ok, run

MAP = ("kind,value,person,team,cost_centre,effective_from\n"
       "api_key,key_ana,Ana,research,RD-100,\n"
       "Email,Cy@Acme.com,Cy,research,RD-100,\n"
       "api_key,key_ana,Ana,platform,OPS-200,2026-10-15\n"
       "workspace,wrkspc_01,,support,CS-300,\n")


def test_identity_map_import_list_and_versions(cli_env, tmp_path) -> None:
    path = tmp_path / "map.csv"
    path.write_text(MAP)
    first = ok("identities", "import", str(path), "--format", "json").json()[0]
    again = ok("identities", "import", str(path), "--format", "json").json()[0]
    assert (again["added"], again["changed"], again["unchanged"]) == (0, 0, 4)
    assert first["rows"] == 4
    on_14th = {r["value"]: r for r in ok("identities", "list", "--at", "2026-10-14", "--format", "json").json()}
    on_15th = {r["value"]: r for r in ok("identities", "list", "--at", "2026-10-15", "--format", "json").json()}
    assert on_14th["key_ana"]["team"] == "research" and on_15th["key_ana"]["team"] == "platform"
    assert on_15th["cy@acme.com"]["kind"] == "email"  # kinds and e-mails are case-insensitive
    assert on_15th["wrkspc_01"]["kind"] == "project" and on_15th["wrkspc_01"]["person"] is None
    history = ok("identities", "list", "--history", "--format", "json").json()
    assert len(history) == 4


@pytest.mark.parametrize("text,where", [
    ("kind,value,person,team\napi_key,k,a,b\n", "line 1, column 'cost_centre'"),
    ("kind,value,person,team,cost_centre\napi_key,k,a,b,c\nphone,555,a,b,c\n", "line 3, column 'kind'"),
    ("kind,value,person,team,cost_centre,effective_from\napi_key,k,a,b,c,15/10/2026\n",
     "line 2, column 'effective_from'"),
    ("kind,value,person,team,cost_centre\napi_key,,a,b,c\n", "line 2, column 'value'"),
])
def test_a_bad_identity_file_applies_nothing(text: str, where: str, cli_env, tmp_path) -> None:
    path = tmp_path / "map.csv"
    path.write_text(text)
    result = run("identities", "import", str(path))
    assert result.exit_code == 2 and where in result.stderr
    assert ok("identities", "list", "--history", "--format", "json").json() == []


def test_seat_plans_and_seats_from_files_and_options(cli_env, tmp_path) -> None:
    plans, seats = tmp_path / "plans.csv", tmp_path / "seats.csv"
    plans.write_text("platform,plan,price,currency,period\ncursor,business,40,usd,month\nclaude,team,300,USD,year\n")
    seats.write_text("platform,plan,email,assigned_from,assigned_to\nclaude,team,Dee@Acme.com,2026-01-01,\n"
                     "claude,team,old@acme.com,2026-01-01,2026-02-01\n")
    ok("seats", "set", "--file", str(plans))
    ok("seats", "assign", "--file", str(seats))
    ok("seats", "assign", "--file", str(seats))  # twice: the same seats
    ok("seats", "assign", "cy@acme.com", "--platform", "cursor", "--plan", "business", "--from", "2026-01-01")
    held = {r["email"]: r for r in ok("seats", "list", "--format", "json").json()}
    assert set(held) == {"dee@acme.com", "cy@acme.com"}
    assert held["dee@acme.com"]["monthly_cost"] == "25.00" and held["cy@acme.com"]["monthly_cost"] == "40.00"
    idle = {r["email"] for r in ok("seats", "idle", "--format", "json").json()}
    assert idle == {"dee@acme.com", "cy@acme.com"}  # held all year, never active
    ok("seats", "release", "cy@acme.com", "--platform", "cursor")
    assert {r["email"] for r in ok("seats", "list", "--format", "json").json()} == {"dee@acme.com"}
    bad = tmp_path / "bad.csv"
    bad.write_text("platform,plan,price,currency,period\ncursor,pro,-5,USD,month\n")
    result = run("seats", "set", "--file", str(bad))
    assert result.exit_code == 2 and "line 2, column 'price'" in result.stderr
    assert run("seats", "set", "--platform", "cursor", "--plan", "pro", "--price", "x").exit_code == 2
