from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IntegrationsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'integrations'

    def ready(self):
        from .claims import schedule_sweep

        # Every `migrate` keeps the sweep's schedule in step with SYNC_SWEEP_MINUTES.
        post_migrate.connect(schedule_sweep, sender=self,
                             dispatch_uid="integrations.schedule_sweep")
