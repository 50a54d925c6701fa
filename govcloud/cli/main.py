"""The root command, its global options, and the one error boundary that maps errors to exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from govcloud import __version__
from govcloud.cli.context import AppContext, find_root
from govcloud.errors import ExitCode, GovcloudError

EPILOG = """\b
Exit codes:
  0    ok
  1    runtime failure (an API, host or tool failed; an audit log that does not verify)
  2    invalid input (inventories, plan or command line; no journal where one is read; a plan or
       system the journal does not know); nothing was changed
  3    changes pending (--dry-run / check found differences)
  4    refused (not confirmed, quorum not met, outside the window,
       a hand-edited plan without --force, a stale plan)
  130  interrupted
"""


class GovcloudGroup(click.Group):
    """Root group: runs the command inside the error boundary."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # the boundary
        kwargs.setdefault("standalone_mode", False)
        argv = kwargs.get("args") if kwargs.get("args") is not None else (args[0] if args else sys.argv[1:])
        debug = "--debug" in (argv or [])
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Abort as exc:  # click's wrapping of Ctrl-C, and of any EOFError
            if isinstance(exc.__cause__, EOFError):  # chained by click's main, never by a prompt
                _internal_error(exc.__cause__, debug)  # an EOFError from a library is no Ctrl-C
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except GovcloudError as exc:
            if debug:
                traceback.print_exc()
            click.echo(exc.render(), err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # the last line of defence: never a bare traceback for users
            _internal_error(exc, debug)
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)


def _internal_error(exc: BaseException, debug: bool) -> None:
    """Exit 1 with the error's type and text: click turns an EOFError raised anywhere in a command
    (paramiko raises one when a host closes the connection mid-handshake) into ``Abort``, which
    would otherwise read as Ctrl-C (exit 130) and hide a failure."""
    if debug:
        traceback.print_exception(exc)
    click.echo(f"error: internal error: {type(exc).__name__}: {exc}\n"
               "  hint: re-run with --debug for the traceback and report it", err=True)
    sys.exit(ExitCode.FAILURE)


@click.group(cls=GovcloudGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="govcloud")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Project directory holding inventories/ (default: nearest govcloud.yaml upwards, else cwd).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def cli(ctx: click.Context, root: Path | None, output: str, debug: bool, verbose: int, quiet: bool) -> None:
    """govcloud: plan, provision, migrate and fail over a provincial government cloud."""
    level = logging.DEBUG if (debug or verbose > 1) else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=logging.ERROR if quiet else level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = AppContext(root=(root or find_root(Path.cwd())).resolve(), output=output, debug=debug,
                         verbosity=-1 if quiet else verbose)


def _register() -> None:
    from govcloud.cli.audit import audit
    from govcloud.cli.dns import dns
    from govcloud.cli.exporter import exporter
    from govcloud.cli.failover import failover
    from govcloud.cli.ha import ha
    from govcloud.cli.hosts import hosts
    from govcloud.cli.migrate import migrate
    from govcloud.cli.plan import plan
    from govcloud.cli.provision import provision
    from govcloud.cli.validate import validate

    cli.add_command(validate)
    cli.add_command(plan)
    cli.add_command(provision)
    cli.add_command(hosts)
    cli.add_command(audit)
    cli.add_command(exporter)
    cli.add_command(failover)
    cli.add_command(ha)
    cli.add_command(migrate)
    cli.add_command(dns)


_register()


def main() -> None:
    cli.main(prog_name="govcloud")
