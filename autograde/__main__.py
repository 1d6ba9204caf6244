"""Command line: ``python -m autograde {release,grade,check,submit,student-kit,bench}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograde.course import LESSONS_DIR, SOLUTIONS_DIR, GraderError


def _release(args) -> int:
    from autograde.release import release, stale_lessons

    if args.check:
        stale = stale_lessons(args.lessons, args.solutions)
        if stale:
            print(f"lessons/ is stale: {', '.join(stale)} differ from what "
                  "`python -m autograde release` generates from solutions/", file=sys.stderr)
            return 1
        print("lessons/ is up to date with solutions/")
        return 0
    generated = release(args.lessons, args.solutions)
    print(f"released {len(generated)} lessons into {args.lessons}: {', '.join(generated)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograde", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("release", help="regenerate lessons/ from solutions/")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 naming the lessons that are stale")
    p.add_argument("--solutions", type=Path, default=SOLUTIONS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--lessons", type=Path, default=LESSONS_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a :class:`GraderError` becomes a one-line message and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GraderError as error:
        print(f"autograde {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
