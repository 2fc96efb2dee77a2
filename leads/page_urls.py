"""Pages of leads for signed-in users, under /leads/.

Members sign in here because the admin's login page accepts staff accounts only.
"""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "lead_pages"

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(
        template_name="leads/login.html", redirect_authenticated_user=True,
        next_page="lead_pages:my-leads", extra_context={"title": "Sign in"},
    ), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="lead_pages:login"),
         name="logout"),
    path("mine/", views.my_leads, name="my-leads"),
    path("mine/<int:lead_id>/sync/", views.sync_my_lead, name="sync-my-lead"),
]
