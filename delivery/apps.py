from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    """Getting work to Celery exactly once in effect: the outbox, retries and dead letters."""

    name = "delivery"
    verbose_name = "Task delivery"
