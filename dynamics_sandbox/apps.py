from django.apps import AppConfig


class DynamicsSandboxConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'dynamics_sandbox'
