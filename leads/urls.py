from rest_framework.routers import SimpleRouter

from .api import LeadViewSet

app_name = "leads"

router = SimpleRouter()
router.register("leads", LeadViewSet, basename="lead")

urlpatterns = router.urls
