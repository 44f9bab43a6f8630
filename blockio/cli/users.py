"""``blockio users``: add, list and remove the users who may sign in, review and write.

``blockio users add NAME --role reader|reviewer|writer|admin`` prints the new
user's token once, as its last line; only a salted hash is stored, in the
service's database (SQLite under the root, or ``$BLOCKIO_DATABASE_URL``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from blockio.cli.arguments import add_root, root_of
from blockio.users import ROLES

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``users`` and its actions on the subcommand table ``sub``."""
    users = sub.add_parser(
        "users",
        help="add, list, remove users (tokens and roles)",
        description="Manage who may use the service: readers read (when BLOCKIO_READS=signed-in), reviewers store "
        "verdicts, writers also write blocks, admins may do everything. Users live in the database under the root "
        "(ROOT/review/review.sqlite) or in $BLOCKIO_DATABASE_URL.",
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user and print its token (once)", description="Add a user; its token is printed once, as the last line.")
    add.add_argument("name", help="1-64 characters of A-Z a-z 0-9 . _ @ -")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    listing = actions.add_parser("list", help="every user and its role (never a token)", description="List the users and their roles.")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    remove = actions.add_parser("remove", help="remove a user (its token stops working at once)", description="Remove a user.")
    remove.add_argument("name")
    for p in (add, listing, remove):
        add_root(p)
        p.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Carry out one action; returns the exit status (1 for a missing user)."""
    from blockio.config import Settings
    from blockio.database import open_database
    from blockio.users import Users

    settings = Settings.from_env()
    users = Users(open_database(root=root_of(args), url=settings.database_url))
    try:
        if args.users_command == "add":
            user, token = users.add(args.name, args.role)
            print(f"added {user.name} ({user.role}); its token, shown only now:")
            print(token)
            return 0
        if args.users_command == "list":
            found = users.list()
            if args.json:
                print(json.dumps([{"name": u.name, "role": u.role, "created": u.created} for u in found], indent=1))
            else:
                for u in found:
                    print(f"{u.name}\t{u.role}\t{u.created}")
            return 0
        if not users.remove(args.name):
            print(f"blockio: error: no user named {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed {args.name}")
        return 0
    finally:
        users.database.close()
