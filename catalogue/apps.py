from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "catalogue"

    def ready(self) -> None:
        # Task counts and durations go to Redis for /metrics, from every process: workers count the tasks they
        # run, web processes and commands the tasks they send.
        from artsite import metrics  # noqa: PLC0415  it imports the catalogue's selectors: only once the apps are loaded

        metrics.connect_task_signals()
