"""The one exception root of govcloud, and the exit codes the CLI boundary maps errors to.

Every error says what went wrong, where (file:line:col and a path into the document when it comes
from an inventory), and how to fix it (``hint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

Cause = Literal["input", "runtime"]
"""Whose a finding is to fix: ``input``, the inventories, topology, plan or command line (exit 2 when
every finding is one); ``runtime``, the world they describe (a host, the cloud, a name server)."""


class ExitCode(IntEnum):
    """Documented process exit codes (see ``govcloud --help`` and the README)."""

    OK = 0
    FAILURE = 1  # a runtime failure: an API, host or tool did not do what was asked
    INVALID_INPUT = 2  # the inventories, a plan or the command line are wrong; nothing was changed
    CHANGES_PENDING = 3  # --dry-run / check found differences
    REFUSED = 4  # a guarded action was refused: no confirmation, quorum not met, outside its window
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True, order=True)
class Location:
    """A place in an input file; line and column are 1-based, 0 when unknown."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    """One finding about the input: an error (blocks) or a warning (reported, exit 0).

    ``cause`` matters only where findings of both kinds are listed together, the migration preflight
    (:class:`PreflightError`): what ``validate``, ``plan check`` and the loaders find is input, hence the
    default; the preflight marks what the hosts, the cloud or the name servers are at fault for
    ``runtime``. It is neither rendered nor in :meth:`as_dict`: the text and the JSON stay as they were.
    """

    location: Location
    path: str
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"
    cause: Cause = "input"

    def render(self) -> str:
        where = f"{self.location}: {self.path}: " if self.path else f"{self.location}: "
        prefix = "" if self.severity == "error" else "warning: "
        text = f"{where}{prefix}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


class GovcloudError(Exception):
    """Root of every error govcloud raises on purpose. ``hint`` says how to fix it."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class InvalidInputError(GovcloudError):
    """The input is wrong; nothing was changed. Carries every diagnostic found, not only the first."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, message: str, *, hint: str = "", diagnostics: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = diagnostics

    def render(self) -> str:
        lines = [d.render() for d in self.diagnostics]
        lines.append(super().render())
        return "\n".join(lines)


class InventoryError(InvalidInputError):
    """The inventories do not load or do not validate."""


class PlanError(InvalidInputError):
    """A migration plan cannot be made from the inventories, or a plan file violates a constraint."""


class CapacityError(PlanError):
    """The systems do not fit the sites' capacity."""


class RefusedError(GovcloudError):
    """A guarded action was not done on purpose: not confirmed, quorum not met, outside its window."""

    exit_code = ExitCode.REFUSED


class RuntimeFailure(GovcloudError):
    """Something outside govcloud (an API, a host, a tool) failed; evidence is kept in the message."""


class DnsError(RuntimeFailure):
    """A service-name server refused or failed an update, or could not be asked; names server and reason."""


class DnsConflictError(DnsError):
    """A switch found a record changed outside govcloud (compare-and-swap refused); nothing was changed."""


class OpenStackError(RuntimeFailure):
    """An OpenStack API call failed; keeps the request id, URL, region and the object being made."""

    def __init__(self, message: str, *, hint: str = "", request_id: str = "", url: str = "", region: str = "",
                 resource: str = "", status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.request_id = request_id
        self.url = url
        self.region = region
        self.resource = resource
        self.status = status


class ProvisionError(RuntimeFailure):
    """Applying a landing-zone plan failed part-way; lists every failed step with its evidence."""

    def __init__(self, message: str, *, hint: str = "", failures: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.failures = failures

    def render(self) -> str:
        return "\n".join([*(f"error: {f}" for f in self.failures), super().render()])


class PlanDriftError(InvalidInputError):
    """A saved provision plan no longer matches the cloud (or it needs --prune); nothing was changed."""


class AnsibleError(RuntimeFailure):
    """An Ansible run failed; keeps the run id, the failed hosts and their failed tasks."""

    def __init__(self, message: str, *, hint: str = "", run_id: str = "", failed: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.run_id = run_id
        self.failed = failed


class JournalError(RuntimeFailure):
    """The migration journal cannot be opened or written (unreadable file, newer schema, disk full)."""


class JournalMissingError(InvalidInputError):
    """There is no migration journal where one was asked for (exit 2 in every command that reads one):
    the path is wrong or nothing was migrated yet. Nothing is created in its place."""


class WaveLockedError(RuntimeFailure):
    """Another run holds the wave's lock; names the holder (pid, host, user, since when, run id)."""

    def __init__(self, message: str, *, hint: str = "", holder: dict[str, object] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = dict(holder or {})


class AuditTamperedError(RuntimeFailure):
    """The audit log's hash chain is broken; lists every edited, removed, reordered or inserted record."""

    def __init__(self, message: str, *, hint: str = "", problems: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems

    def render(self) -> str:
        return "\n".join([*(f"error: {p}" for p in self.problems), super().render()])


class SSHError(RuntimeFailure):
    """An SSH connection or a remote command failed; keeps the host, the command and its exit status."""

    def __init__(self, message: str, *, hint: str = "", host: str = "", command: str = "", status: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(message, hint=hint)
        self.host = host
        self.command = command
        self.status = status
        self.stderr = stderr


class HostKeyError(SSHError):
    """A host presented a key that known_hosts does not have (unknown) or does not match (changed)."""

    def __init__(self, message: str, *, hint: str = "", host: str = "", presented: str = "",
                 expected: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint, host=host)
        self.presented = presented
        self.expected = expected


class MigrationError(RuntimeFailure):
    """A migration step failed on a host or in the cloud; names the system, the step and the evidence."""


class PreflightError(RuntimeFailure):
    """The pre-flight checks found problems; nothing was provisioned. Every problem is a diagnostic, as
    input errors are: where (the inventory entry of the host or system, or the file at fault), which
    system (its ``path``), what, and how to fix it (its ``hint``).

    Exit 2 (invalid input) when every problem is the inventories' or the topology's (``cause`` "input":
    no image for a host's OS, a health check on a port nothing listens on, an unknown ``ansible_role``),
    as `validate` would exit had it been able to see them; exit 1 as soon as one is the world's (a host
    unreachable, a key changed, the cloud or a name server not ready): retrying may then succeed without
    an edit. One class either way, so callers catch one exception and read ``exit_code``.
    """

    def __init__(self, message: str, *, hint: str = "", diagnostics: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = diagnostics
        if diagnostics and all(d.cause == "input" for d in diagnostics):
            self.exit_code = ExitCode.INVALID_INPUT

    def render(self) -> str:
        return "\n".join([*(d.render() for d in self.diagnostics), super().render()])


class OutsideWindowError(RefusedError):
    """A cutover was asked for outside the wave's maintenance window (and without --outside-window)."""


class StalePlanError(RefusedError):
    """A migration was asked to run a plan made from other inventories (its ``inventory_digest`` is not
    theirs) without --allow-stale-plan; carries the diagnostic `govcloud plan check` prints for it."""

    def __init__(self, message: str, *, hint: str = "", diagnostics: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.diagnostics = diagnostics

    def render(self) -> str:
        return "\n".join([*(d.render() for d in self.diagnostics), super().render()])
