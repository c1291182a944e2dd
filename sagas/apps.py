from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"

    def ready(self) -> None:
        # Register the sagas this project defines (web nodes and workers both need them).
        from sagas import comment_and_react  # noqa: F401
