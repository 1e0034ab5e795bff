"""The admin command: `python -m app.admin keys create|list|revoke` and `projects list`. It uses
the server's settings (DATABASE_URL, DATA_DIR), migrates an embedded database first, and prints
a new key alone on its last line, so `KEY=$(python -m app.admin keys create ... | tail -1)`
works."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.auth import service
from app.auth.schemas import KeyCreate
from app.core.config import get_settings
from app.core.errors import AppError
from app.db.migrate import upgrade_head
from app.db.models import Role
from app.runtime.context import AppContext, build_context


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.admin", description=__doc__)
    groups = parser.add_subparsers(dest="group", required=True)
    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key (and its project if new)")
    create.add_argument("--project", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", default=None, help="a note, e.g. its owner")
    listing = keys.add_parser("list", help="list keys")
    listing.add_argument("--project", default=None)
    revoke = keys.add_parser("revoke", help="revoke a key by id or visible prefix")
    revoke.add_argument("key")
    projects = groups.add_parser("projects", help="projects")
    projects.add_subparsers(dest="action", required=True).add_parser(
        "list", help="projects with their quotas and usage"
    )
    return parser


def _run(ctx: AppContext, args: argparse.Namespace) -> None:
    if args.group == "keys" and args.action == "create":
        body = KeyCreate.model_validate(
            {"project": args.project, "role": args.role, "name": args.name}, strict=False
        )
        created = service.create_key(ctx, project=body.project, role=body.role, name=body.name)
        print(f"created key {created.prefix} (id {created.id}) for project {created.project}, "
              f"role {created.role.value}; it is shown only now:")  # fmt: skip
        print(created.token)
    elif args.group == "keys" and args.action == "list":
        for key in service.list_keys(ctx, project=args.project):
            print(json.dumps(key.model_dump(mode="json")))
    elif args.group == "keys" and args.action == "revoke":
        out = service.revoke_key(ctx, key=args.key)
        print(f"revoked key {out.prefix} (id {out.id})")
    else:
        for project in service.list_projects(ctx):
            print(json.dumps(project.model_dump(mode="json")))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    ctx = build_context(settings)
    try:
        if settings.should_migrate_on_start:
            upgrade_head(settings.resolved_database_url)
        _run(ctx, args)
    except ValidationError as exc:
        print(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
