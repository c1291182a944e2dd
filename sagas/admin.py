"""Sagas in the admin: runs with their steps inline, filtered by state, with resume/compensate actions."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sagas.models import SagaRun, SagaStep
from sagas.services import StepStillRunning, saga_compensate, saga_resume


class SagaStepInline(admin.TabularInline):
    model = SagaStep
    extra = 0
    can_delete = False
    fields = ("index", "name", "state", "attempts", "result", "error", "compensation_attempts", "compensation_error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: SagaRun | None = None) -> bool:
        return False


@admin.register(SagaRun)
class SagaRunAdmin(admin.ModelAdmin):
    list_display = ("id", "saga_type", "state", "user", "stream", "generation", "created_at", "updated_at")
    list_filter = ("state", "saga_type", ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "user__username", "idempotency_key")
    list_select_related = ("user", "stream")
    readonly_fields = (
        "saga_type",
        "user",
        "stream",
        "input",
        "state",
        "generation",
        "idempotency_key",
        "created_at",
        "updated_at",
    )
    inlines = [SagaStepInline]
    actions = ("resume_selected", "compensate_selected")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resume selected sagas (queue what they wait for)")
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> None:
        for run in queryset:
            self.message_user(request, f"{run.id}: {saga_resume(run_id=run.id)}", messages.INFO)

    @admin.action(description="Compensate selected sagas (undo what they did)")
    def compensate_selected(self, request: HttpRequest, queryset: QuerySet[SagaRun]) -> None:
        for run in queryset:
            try:
                self.message_user(request, f"{run.id}: {saga_compensate(run_id=run.id)}", messages.INFO)
            except StepStillRunning as exc:
                self.message_user(request, f"{run.id}: {exc}", messages.WARNING)
