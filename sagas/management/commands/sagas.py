"""``manage.py sagas list|show ID|resume ID|compensate ID``: operate sagas from a shell.

Exit codes: 0 done; 1 unknown saga or nothing to do; 2 bad usage; 3 refused for now (compensate
while a step's action is running inside its claim): run it again later.
"""

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sagas.models import SagaRun, SagaState
from sagas.selectors import saga_report
from sagas.services import StepStillRunning, saga_compensate, saga_resume


class Command(BaseCommand):
    help = "List, show, resume and compensate sagas (exit 0 ok, 1 unknown or nothing to do, 2 usage, 3 try later)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list")
        listing.add_argument("--state", choices=[*SagaState.values, "all"], default="all")
        listing.add_argument("--limit", type=int, default=50)
        for name in ("show", "resume", "compensate"):
            sub.add_parser(name).add_argument("id", type=uuid.UUID)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        code = getattr(self, f"_{action}")(**options)
        if code:
            raise SystemExit(code)

    def _list(self, *, state: str, limit: int, **_: Any) -> int:
        runs = SagaRun.objects.select_related("user").order_by("-created_at")
        if state != "all":
            runs = runs.filter(state=state)
        rows = [
            [str(r.id), r.saga_type, r.state, r.user.get_username(), r.created_at.strftime("%Y-%m-%d %H:%M:%S")]
            for r in runs[:limit]
        ]
        if not rows:
            self.stdout.write("no sagas")
            return 0
        headers = ["ID", "TYPE", "STATE", "USER", "CREATED (UTC)"]
        widths = [max(len(c) for c in col) for col in zip(headers, *rows, strict=False)]
        for line in [headers, *rows]:
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)))
        return 0

    def _run(self, run_id: uuid.UUID) -> SagaRun | None:
        run = SagaRun.objects.filter(id=run_id).first()
        if run is None:
            self.stderr.write(f"no saga {run_id}")
        return run

    def _show(self, *, id: uuid.UUID, **_: Any) -> int:
        run = self._run(id)
        if run is None:
            return 1
        self.stdout.write(json.dumps(saga_report(run=run), indent=2))
        return 0

    def _act(self, run_id: uuid.UUID, action: Any) -> int:
        if self._run(run_id) is None:
            return 1
        outcome = action(run_id=run_id)
        self.stdout.write(outcome)
        return 1 if outcome.startswith("saga is") or outcome.startswith("nothing") else 0

    def _resume(self, *, id: uuid.UUID, **_: Any) -> int:
        return self._act(id, saga_resume)

    def _compensate(self, *, id: uuid.UUID, **_: Any) -> int:
        try:
            return self._act(id, saga_compensate)
        except StepStillRunning as exc:
            self.stdout.write(str(exc))
            return 3
