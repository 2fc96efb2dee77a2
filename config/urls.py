from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="integrations:settings", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include("leads.urls")),
    path("leads/", include("leads.page_urls")),
    path("integrations/sync/", include("integrations.sync_urls")),
    path("integrations/", include("integrations.urls")),
]
